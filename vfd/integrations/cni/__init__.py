"""`vfd-cni`: vfd as a Kubernetes CNI plugin for SR-IOV VFs (docs/kubernetes.md).

The netconf speaks sriov-cni's field names; the VF's policy is admitted and programmed by the
vfd daemon (through the same FIFO protocol as iplex); the plugin itself only moves the VF's
netdev into the pod, delegates IPAM, and keeps a small per-attachment cache so DEL works after
the pod is gone.

Modules: `errors` (CNI error codes), `netconf` (stdin + CNI_* environment -> NetConf, and the
VF config it asks vfd for), `vf` (sysfs: deviceID -> PF and VF number, and vfd's PF id),
`netdev` (move, rename, address the VF netdev), `rtnl` (its rtnetlink requests on plain sockets, the
pod's namespace entered in-process: no pyroute2, whose import dominated the plugin's start-up),
`ipam` (delegation to the IPAM plugin),
`cache` (per-attachment state and the per-VF lock), `main` (the commands).
"""
