from vfd.capabilities import PROFILES
from vfd.model.mainconfig import PFConfig
from vfd.model.vfconfig import VFConfig
from vfd.policy.admission import admit
from vfd.state import LiveVF, PFState


def pf_state(driver="ixgbe", vfs=8, speed=10000, qos=False, pf_id="0000:07:00.0", **pfcfg) -> PFState:
    return PFState(cfg=PFConfig(id=pf_id, **pfcfg), backend="sim", profile=PROFILES[driver], vfs_count=vfs,
                   link_speed=speed, mtu=9000, qos=qos, index=0)


def cfg(vfid=1, vlans=(10,), macs=None, pciid="0000:07:00.0", **extra) -> VFConfig:
    data = {"pciid": pciid, "vfid": vfid, "vlans": list(vlans), **extra}
    if macs is not None:
        data["macs"] = list(macs)
    return VFConfig.model_validate(data)


def make_live(pf: PFState, c: VFConfig, port_id=None) -> LiveVF:
    program = admit(c, pf)
    vf = LiveVF(port_id=port_id or f"port{c.vfid}", config=c, program=program, owner_uid=0, raw=b"{}")
    pf.add(vf)
    return vf
