"""Resource profiles restricted to Hub groups, through /build in-process: anonymous readers and
signed-in non-members are refused (403, profile_not_allowed, the message naming what they may
choose) before anything is built or launched; a member launches with the profile. The Hub's user
model (its groups) comes from the Hub stand-in of tests/web_app.py.
"""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from panbinder.web.api import openapi
from tests.web_app import git_spec, web_portal

SPEC = git_spec()
MEMBER_TOKEN = "alice-token"
OTHER_TOKEN = "bob-token"
PROFILES = [
    {"name": "small", "cpu": 0.5, "memory": "512M"},
    {"name": "gpu", "cpu": 4, "memory": "16G", "gpus": 1, "partition": "gpu", "groups": ["gpu-users"]},
]

# one portal for the module, its tests on the module's event loop
on_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_portal(tmp_path_factory):
    async with web_portal(tmp_path_factory.mktemp("web-profiles"), {"Profiles": {"profiles": PROFILES}}) as p:
        p.hub_users[MEMBER_TOKEN] = {"name": "alice", "groups": ["gpu-users", "proposal-42"]}
        p.hub_users[OTHER_TOKEN] = {"name": "bob", "groups": ["proposal-42"]}
        yield p


@pytest.fixture
def portal(module_portal):
    """The module's portal, with no build or launch recorded yet."""
    module_portal.builder.requests.clear()
    module_portal.launcher.requests.clear()
    return module_portal


@on_module_loop
@pytest.mark.parametrize("token", ["", OTHER_TOKEN], ids=["anonymous", "non-member"])
async def test_a_restricted_profile_is_refused_before_anything_starts(portal, token):
    resp = await portal.fetch(f"/build/git/{SPEC}?profile=gpu", token=token)
    assert resp.code == 403, (resp.code, resp.body)
    data = json.loads(resp.body)
    assert data["reason"] == "profile_not_allowed", data
    assert "gpu-users" in data["message"] and data["message"].endswith("choose one of: small.")
    assert portal.builder.requests == [] and portal.launcher.requests == []


@on_module_loop
async def test_a_member_launches_with_the_gpu_profile(portal):
    s = await portal.stream(f"/build/git/{SPEC}?profile=gpu", token=MEMBER_TOKEN)
    assert s.code == 200 and s.phases[-1] == "ready", s.raw
    (launch,) = portal.launcher.requests
    assert launch.profile is not None and launch.profile.name == "gpu" and launch.profile.gpus == 1


@on_module_loop
@pytest.mark.parametrize("token", ["", OTHER_TOKEN], ids=["anonymous", "non-member"])
async def test_an_unrestricted_profile_is_for_everyone(portal, token):
    s = await portal.stream(f"/build/git/{SPEC}?profile=small", token=token)
    assert s.code == 200 and s.phases[-1] == "ready", s.raw
    (launch,) = portal.launcher.requests
    assert launch.profile is not None and launch.profile.name == "small"


@on_module_loop
async def test_an_unknown_profile_names_only_the_callers_choices(portal):
    resp = await portal.fetch(f"/build/git/{SPEC}?profile=huge")
    assert resp.code == 400 and json.loads(resp.body)["reason"] == "unknown_profile"
    assert json.loads(resp.body)["message"].endswith("choose one of: small.")


def test_the_description_documents_the_profile_parameter_and_its_refusals():
    doc = openapi.description()
    responses = doc["components"]["responses"]
    builds = [item["get"] for path, item in doc["paths"].items() if path.startswith("/build/")]
    assert len(builds) == 4
    for op in builds:
        assert {"$ref": "#/components/parameters/profile"} in op["parameters"], op["operationId"]
        bad, refused = (responses[op["responses"][s]["$ref"].rsplit("/", 1)[-1]] for s in ("400", "403"))
        assert "unknown_profile" in bad["description"], op["operationId"]
        assert "profile_not_allowed" in refused["description"], op["operationId"]
    parameter = doc["components"]["parameters"]["profile"]
    assert parameter["in"] == "query" and "profile_not_allowed" in parameter["description"]
