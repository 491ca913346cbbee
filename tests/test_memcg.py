"""The victim's memcg path names its container, pod and unit."""

from __future__ import annotations

import pytest

from sentinel.kernel.memcg import MemcgIdentity, identify

CID = "6141f63fdc9f5bca4ad9c5a98e50a8ad7588948f281668a09bb4f1309af7b059"
CID2 = "a07d3c191742700df28b349710c93b2014b255b22364decb09b53ca123fa8272"
POD = "1788d98a-0700-426a-8701-2312e4cc2163"
POD_ = POD.replace("-", "_")


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (f"/docker/{CID}", MemcgIdentity(runtime="docker", container_id=CID)),
        (
            f"/system.slice/docker-{CID}.scope",
            MemcgIdentity(runtime="docker", container_id=CID, systemd_unit=f"docker-{CID}.scope"),
        ),
        (
            f"/kubepods/burstable/pod{POD}/{CID}",
            MemcgIdentity(
                runtime="kubernetes", container_id=CID, pod_uid=POD, qos_class="burstable"
            ),
        ),
        (
            f"/kubepods/pod{POD}/{CID}",
            MemcgIdentity(
                runtime="kubernetes", container_id=CID, pod_uid=POD, qos_class="guaranteed"
            ),
        ),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/"
            f"cri-containerd-{CID}.scope",
            MemcgIdentity(
                runtime="containerd",
                container_id=CID,
                pod_uid=POD,
                qos_class="besteffort",
                systemd_unit=f"cri-containerd-{CID}.scope",
            ),
        ),
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/"
            f"crio-{CID}.scope",
            MemcgIdentity(
                runtime="cri-o",
                container_id=CID,
                pod_uid=POD,
                qos_class="burstable",
                systemd_unit=f"crio-{CID}.scope",
            ),
        ),
        (
            f"/machine.slice/libpod-{CID}.scope",
            MemcgIdentity(runtime="podman", container_id=CID, systemd_unit=f"libpod-{CID}.scope"),
        ),
        (
            f"/docker/{CID}/kubelet/kubepods/pod{POD}/{CID2}",
            MemcgIdentity(
                runtime="kubernetes", container_id=CID2, pod_uid=POD, qos_class="guaranteed"
            ),
        ),
        (
            f"/lxc/39004/ns/system.slice/docker-{CID}.scope",
            MemcgIdentity(runtime="docker", container_id=CID, systemd_unit=f"docker-{CID}.scope"),
        ),
        ("/lxc/39004", MemcgIdentity(runtime="lxc")),
        (
            "/lxc.payload.web/system.slice/nginx.service",
            MemcgIdentity(runtime="lxc", systemd_unit="nginx.service"),
        ),
        (
            "/system.slice/jenkins.service",
            MemcgIdentity(runtime="systemd", systemd_unit="jenkins.service"),
        ),
        (
            "/user.slice/user-0.slice/session-1.scope",
            MemcgIdentity(runtime="systemd", systemd_unit="session-1.scope"),
        ),
        (
            "/system.slice/run-r0123456789abcdef0123456789abcdef.scope",
            MemcgIdentity(
                runtime="systemd", systemd_unit="run-r0123456789abcdef0123456789abcdef.scope"
            ),
        ),
        (
            f"/system.slice/crio-conmon-{CID}.scope",
            MemcgIdentity(runtime="systemd", systemd_unit=f"crio-conmon-{CID}.scope"),
        ),
        (
            # kind's kubelet runs with cgroupRoot /kubelet: the root is in every slice name
            f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
            f"kubelet-kubepods-burstable-pod{POD_}.slice/cri-containerd-{CID}.scope",
            MemcgIdentity(
                runtime="containerd",
                container_id=CID,
                pod_uid=POD,
                qos_class="burstable",
                systemd_unit=f"cri-containerd-{CID}.scope",
            ),
        ),
        (
            # a static pod's uid is the md5 of its manifest: 32 hex digits, no dashes
            f"/kubepods/besteffort/pod0123456789abcdef0123456789abcdef/{CID}",
            MemcgIdentity(
                runtime="kubernetes",
                container_id=CID,
                pod_uid="0123456789abcdef0123456789abcdef",
                qos_class="besteffort",
            ),
        ),
        ("/mem2", MemcgIdentity()),
        ("/", MemcgIdentity()),
        (None, MemcgIdentity()),
    ],
)
def test_identity(path: str | None, want: MemcgIdentity) -> None:
    assert identify(path) == want
