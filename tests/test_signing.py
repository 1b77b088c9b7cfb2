"""Launch-option signatures: bound to the Hub user and expiring, checked again by the spawner.

The attacks: replay options signed for one user in another user's server, replay them after
they expired, and change any signed field (image, mounts, environment, user, expiry).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from panbinder.data_mounts import MountSpec
from panbinder.errors import PanbinderError
from panbinder.launcher import LaunchRequest, signing
from panbinder.launcher.hub_api import HubLauncher
from panbinder.launcher.profiles import Profile
from panbinder.launcher.signing import SignedFields
from panbinder.launcher.spawner import PanbinderSpawner
from panbinder.registry_cache import ImageRef

KEY = "test-signing-key"
NOW = 1_800_000_000.0
FIELDS = SignedFields(
    image="img:1",
    mounts=(MountSpec("/s/a", "/data/a"),),
    environment={"A": "1"},
    user="pb-alice",
    expires=int(NOW) + 300,
)


def refusal(fields: SignedFields, signature: str, *, user: str = "pb-alice", now: float = NOW) -> str:
    with pytest.raises(PanbinderError) as e:
        signing.verify(KEY, signature, fields, user=user, now=now)
    assert e.value.status_code == 403
    return e.value.reason


def test_valid_signature_for_its_user_before_expiry():
    signing.verify(KEY, signing.sign(KEY, FIELDS), FIELDS, user="pb-alice", now=NOW)


def test_replay_for_another_user_is_refused():
    assert refusal(FIELDS, signing.sign(KEY, FIELDS), user="pb-mallory") == "wrong_user"


def test_replay_after_expiry_is_refused():
    sig = signing.sign(KEY, FIELDS)
    signing.verify(KEY, sig, FIELDS, user="pb-alice", now=FIELDS.expires)  # the last valid second
    assert refusal(FIELDS, sig, now=FIELDS.expires + 1) == "expired"


@pytest.mark.parametrize(
    "change",
    [
        {"image": "img:2"},
        {"mounts": (MountSpec("/s/embargoed", "/data/a"),)},
        {"environment": {"A": "2"}},
        {"user": "pb-mallory"},  # re-addressed to the user who replays it
        {"expires": int(NOW) + 10**6},  # lifetime stretched
    ],
)
def test_any_changed_field_breaks_the_signature(change):
    sig = signing.sign(KEY, FIELDS)
    changed = dataclasses.replace(FIELDS, **change)
    assert refusal(changed, sig, user=changed.user) == "bad_signature"


def test_no_key_refuses_everything():
    with pytest.raises(PanbinderError) as e:
        signing.verify("", signing.sign(KEY, FIELDS), FIELDS, user="pb-alice", now=NOW)
    assert e.value.reason == "unsigned"


@pytest.mark.parametrize(
    "bad",
    [
        {"environment": {"A": 1}},
        {"environment": "A=1"},
        {"expires": "soon"},
        {"expires": True},
        {"user": ["pb-alice"]},
        {"mounts": "x"},
    ],
)
def test_malformed_signed_fields_are_refused(bad):
    options = {**signing.signed_options(KEY, FIELDS), **bad}
    with pytest.raises(PanbinderError):
        signing.fields_from_options(options)


def test_options_round_trip():
    options = signing.signed_options(KEY, FIELDS)
    assert signing.fields_from_options(options) == FIELDS


# the portal's HubLauncher signs, the Hub's PanbinderSpawner checks


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    (tmp_path / "open").mkdir()
    return tmp_path


def launch_request(storage: Path) -> LaunchRequest:
    return LaunchRequest(
        launch_id="x",
        image=ImageRef("127.0.0.1:5000", "panbinder/v1-git-a", "a"),
        mounts=(MountSpec(str(storage / "open"), "/data/open", True),),
        environment=(("PANBINDER_DATA", "/data"),),
    )


def spawner_for(user: str, options: dict, storage: Path) -> PanbinderSpawner:
    sp = PanbinderSpawner(
        user=SimpleNamespace(name=user, url=f"/user/{user}/", escaped_name=user, id=1),
        signing_key=KEY,
        storage_roots=[str(storage)],
    )
    sp.user_options = options
    return sp


def test_spawner_accepts_options_signed_for_its_user(storage):
    options = HubLauncher(signing_key=KEY, pool_class=None).user_options(launch_request(storage), "pb-alice")
    assert options["user"] == "pb-alice"
    assert time.time() < options["expires"] <= time.time() + 300
    sp = spawner_for("pb-alice", options, storage)
    sp.apply_launch_options()
    assert sp.read_only_volumes == {str(storage / "open"): {"bind": "/data/open", "mode": "ro"}}
    assert sp.environment["PANBINDER_DATA"] == "/data"


def test_spawner_refuses_options_of_another_user(storage):
    options = HubLauncher(signing_key=KEY, pool_class=None).user_options(launch_request(storage), "pb-alice")
    sp = spawner_for("pb-mallory", options, storage)
    with pytest.raises(PanbinderError) as e:
        sp.apply_launch_options()
    assert e.value.reason == "wrong_user" and "another user" in e.value.message
    assert not sp.read_only_volumes


def test_spawner_refuses_expired_options(storage):
    launcher = HubLauncher(signing_key=KEY, pool_class=None, signature_lifetime=-1)
    sp = spawner_for("pb-alice", launcher.user_options(launch_request(storage), "pb-alice"), storage)
    with pytest.raises(PanbinderError) as e:
        sp.apply_launch_options()
    assert e.value.reason == "expired" and "expired" in e.value.message
    assert not sp.read_only_volumes


def test_spawner_refuses_options_from_the_old_unbound_format(storage):
    """Options signed before signatures named a user (no ``user``/``expires``) no longer pass."""
    request = launch_request(storage)
    env = dict(request.environment)
    old = {
        "image": request.image.full,
        "mounts": signing.to_options(request.mounts),
        "environment": env,
        "signature": "0" * 64,
    }
    with pytest.raises(PanbinderError) as e:
        spawner_for("pb-alice", old, storage).apply_launch_options()
    assert e.value.reason == "bad_signature"


def test_image_only_options_need_no_signature(storage):
    request = dataclasses.replace(launch_request(storage), mounts=(), environment=())
    options = HubLauncher(signing_key=KEY, pool_class=None).user_options(request, "pb-alice")
    assert options == {"image": request.image.full}
    spawner_for("pb-bob", options, storage).apply_launch_options()


# resource profiles are signed with the options: an owner cannot ask for more than the portal chose

GPU = Profile("gpu", cpu=2, memory="4G", gpus=1, partition="gpu", time_limit=60)


def test_options_without_a_profile_sign_as_before():
    assert b"profile" not in signing.canonical(FIELDS)
    with_profile = dataclasses.replace(FIELDS, profile=GPU)
    assert signing.fields_from_options(signing.signed_options(KEY, with_profile)) == with_profile


@pytest.mark.parametrize("change", [{"gpus": 4}, {"cpu": 8}, {"memory": "64G"}, {"partition": "big"}])
def test_a_changed_profile_breaks_the_signature(change):
    signed = dataclasses.replace(FIELDS, profile=GPU)
    sig = signing.sign(KEY, signed)
    changed = dataclasses.replace(signed, profile=dataclasses.replace(GPU, **change))
    assert refusal(changed, sig) == "bad_signature"
    assert refusal(dataclasses.replace(FIELDS), sig) == "bad_signature"  # a profile dropped


def test_spawner_applies_the_signed_profile(storage):
    request = LaunchRequest(
        launch_id="x", image=ImageRef("127.0.0.1:5000", "panbinder/v1-git-a", "a"), profile=GPU
    )
    options = HubLauncher(signing_key=KEY, pool_class=None).user_options(request, "pb-alice")
    assert options["profile"]["gpus"] == 1 and options["signature"]
    sp = spawner_for("pb-alice", options, storage)
    sp.apply_launch_options()
    assert (sp.mem_limit, sp.cpu_limit) == (4 * 1024**3, 2.0)
    assert sp.extra_host_config["device_requests"] == [
        {"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}
    ]
    forged = {**options, "profile": {**options["profile"], "gpus": 8}}
    with pytest.raises(PanbinderError) as e:
        spawner_for("pb-alice", forged, storage).apply_launch_options()
    assert e.value.reason == "bad_signature"
