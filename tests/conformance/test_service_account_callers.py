"""A pod's call without a key, as docs/service-accounts.md tells app teams to make it: the
official OpenAI SDK reads the projected ServiceAccount token from its file for every request,
so the kubelet's refresh of the file (an atomic swap of the `..data` symlink) is picked up
with no restart. The cluster is the in-repo test API server (its service-account issuer mints
the tokens through `TokenRequest`, as the kubelet asks for them); the gateway runs in
Kubernetes mode against it."""

import os
import pathlib
import subprocess
import tempfile
import time

import openai
import pytest
import yaml
from kubernetes import client, config

from conftest import _free_port, _gateway_binary, kube_test_server, wait_ready

ROOT = pathlib.Path(__file__).resolve().parents[2]
GROUP, VERSION = "llmgateway.io", "v1alpha1"
AUDIENCE = "llm-gateway"


def mint(core: client.CoreV1Api, account: str) -> str:
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"audiences": [AUDIENCE], "expirationSeconds": 600}}
    return core.create_namespaced_service_account_token(account, "apps", request).status.token


class ProjectedVolume:
    """A `serviceAccountToken` projected volume as the kubelet writes it: `token` is a symlink
    through `..data` to a timestamped directory, and a refresh swaps `..data` atomically."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.generation = 0
        (root / "token").symlink_to("..data/token")

    def write(self, token: str) -> None:
        self.generation += 1
        directory = self.root / f"..{self.generation}"
        directory.mkdir()
        (directory / "token").write_text(token)
        staged = self.root / "..data_tmp"
        staged.symlink_to(directory.name)
        os.replace(staged, self.root / "..data")


@pytest.fixture()
def cluster():
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        extensions = client.ApiextensionsV1Api(api)
        for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "apps"}})
        for name in ("chat", "other"):
            core.create_namespaced_service_account("apps", {"metadata": {"name": name}})
        custom = client.CustomObjectsApi(api)
        objects = [
            ("llmproviders", "LlmProvider", "fake", {"type": "fake"}),
            ("routepolicies", "RoutePolicy", "routes", {"routes": [{"model": "m", "targets": [{"provider": "fake"}]}]}),
            ("llmgateways", "LlmGateway", "gw", {"auth": {"serviceAccounts": {"audiences": [AUDIENCE]}}}),
            ("apikeys", "ApiKey", "chat-app", {"owner": "chat-team", "serviceAccountRef": {"namespace": "apps", "name": "chat"}}),
        ]
        for plural, kind, name, spec in objects:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
            custom.create_namespaced_custom_object(GROUP, VERSION, "default", plural, body)
        yield kubeconfig, core


@pytest.fixture()
def gateway(cluster):
    kubeconfig, _ = cluster
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "WATCH_NAMESPACE": "default", "GATEWAY_NAME": "gw",
           "HOST": "127.0.0.1", "PORT": str(port), "ADMIN_ADDRESS": f"127.0.0.1:{_free_port()}",
           "LOG_LEVEL": "warn", "API_KEY_PEPPER": "a-test-pepper-of-enough-length-0123456789"}
    process = subprocess.Popen([str(_gateway_binary())], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url):
            pytest.fail("gateway did not become ready within 20 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_openai_sdk_reads_the_token_file_for_each_request_and_follows_its_refresh(cluster, gateway):
    _, core = cluster
    with tempfile.TemporaryDirectory() as tmp:
        volume = ProjectedVolume(pathlib.Path(tmp))
        token_file = pathlib.Path(tmp) / "token"
        # The pattern docs/service-accounts.md gives app teams: a callable api_key.
        sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=lambda: token_file.read_text().strip(),
                            max_retries=0)

        def chat() -> str:
            return sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).id

        volume.write(mint(core, "chat"))
        deadline = time.monotonic() + 20
        while True:  # until the gateway has fetched the issuer's keys
            try:
                chat()
                break
            except openai.AuthenticationError:
                assert time.monotonic() < deadline, "the ServiceAccount token was never accepted"
                time.sleep(0.1)

        # The kubelet refreshes the file: the next request carries what it now holds. A token
        # of a ServiceAccount no ApiKey names is refused, so the refusal proves the re-read.
        volume.write(mint(core, "other"))
        with pytest.raises(openai.AuthenticationError) as refused:
            chat()
        assert refused.value.status_code == 401
        volume.write(mint(core, "chat"))
        assert chat()
