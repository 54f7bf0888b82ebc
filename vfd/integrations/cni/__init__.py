"""`vfd-cni`: vfd as a Kubernetes CNI plugin for SR-IOV VFs (docs/kubernetes.md).

The plugin binary is a static front end (tools/cni-frontend/vfd-cni.c) handing each command to the
daemon's CNI socket (vfd/daemon/cni.py); this package is the commands, run there in a thread per
request (or in a process of their own: vfd-cni-inproc). The netconf speaks sriov-cni's field
names; the VF's policy is admitted and programmed by the vfd daemon (asked through the same
protocol as iplex); the commands move the VF's netdev into the pod, delegate IPAM, and keep a small
per-attachment cache so DEL works after the pod is gone.

Modules: `errors` (CNI error codes), `netconf` (stdin + CNI_* environment -> NetConf, and the
VF config it asks vfd for), `vf` (sysfs: deviceID -> PF and VF number, and vfd's PF id),
`netdev` (move, rename, address the VF netdev), `rtnl` (its rtnetlink requests on plain sockets, the
pod's namespace entered in-process: no pyroute2, whose import dominated the plugin's start-up),
`ipam` (delegation to the IPAM plugin), `wire` (the CNI socket's framing),
`cache` (per-attachment state and the per-VF lock), `main` (the commands).
"""
