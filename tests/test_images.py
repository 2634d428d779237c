"""Image releases: a tag resolved to its digest at registration, pulled by every host of a stage,
run as one container per release, rolled back from the image still on the host. Real sshd
hosts, each with its own podman storage, and a real registry on loopback."""

from __future__ import annotations

import json

import pytest

from releaser.images import parse_image
from tests.harness.containers import Registry, podman, podman_conf, stop_all
from tests.harness.marks import starts

HOSTS = {"dev": ["dev-1"], "test": ["test-1"], "prod": ["web-1", "web-2", "web-3", "web-4"]}

PLAYBOOK = """\
keep_releases: 2
container:
  name: shop
  env: {ADDR: "{address}", PORT: "{PORT}", NAME: "{name}"}
  ready: "http://{address}:{PORT}/ready"
  ready_timeout: 20s
  stop_timeout: 5s
"""

CHECKS = """\
checks:
  - name: health
    type: http
    url: "http://{address}:{PORT}/health"
    expect_status: [200]
    timeout: 2s
"""


@pytest.fixture(scope="module")
@starts("podman")
def registry(tmp_path_factory):
    server = Registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.close()


class ImageProject:
    def __init__(self, project, fleet, registry, tmp_path):
        self.project, self.registry = project, registry
        self.podman_dirs = {}
        addresses = iter(fleet.addresses)
        envs = []
        for env, hosts in HOSTS.items():
            entries = []
            for host in hosts:
                directory = tmp_path / "podman" / host
                self.podman_dirs[host] = directory
                conf = podman_conf(directory)
                entries.append(
                    f"{{name: {host}, address: {next(addresses)}, vars: {{CONTAINERS_CONF: {conf['CONTAINERS_CONF']}, "
                    f"CONTAINERS_STORAGE_CONF: {conf['CONTAINERS_STORAGE_CONF']}}}}}"
                )
            envs.append(
                f'  {env}:\n    transport: ssh\n    root: "{project.dir}/hosts/{{host}}"\n'
                f"    ssh: {fleet.ssh_options()}\n    playbook: shop\n    command_timeout: 60s\n"
                f'    vars: {{PORT: "18{len(envs)}80"}}\n    hosts: [{", ".join(entries)}]'
            )
        stages = "".join(
            f"  - stage: {stage}\n    environment: {env}\n    checks: [health]\n    bake: 300ms\n    interval: 100ms\n"
            for stage, env in (("selftest", "dev"), ("test", "test"), ("gray", "prod"), ("full", "prod"))
        )
        (project.dir / "playbooks" / "shop.yaml").write_text(PLAYBOOK)
        (project.dir / "healthchecks" / "health.yaml").write_text(CHECKS)
        (project.dir / "environments.yaml").write_text(
            f"project: shop\nregistries:\n  {registry.address}: {{insecure: true}}\n"
            "environments:\n" + "\n".join(envs) + "\npipeline:\n" + stages
        )

    def running(self, host: str) -> list[str]:
        """The releases of the containers running on a host, asked of its podman."""
        conf = podman_conf(self.podman_dirs[host])
        out = podman(conf, "ps", "--format", '{{index .Labels "releaser.release"}}').stdout
        return sorted(out.split())

    def close(self) -> None:
        for directory in self.podman_dirs.values():
            stop_all(podman_conf(directory))


@pytest.fixture
def images(project, ssh_fleet, registry, tmp_path):
    ssh_fleet.heal()
    setup = ImageProject(project, ssh_fleet, registry, tmp_path)
    yield setup
    setup.close()


def test_an_image_release_goes_through_every_stage_and_a_bad_one_rolls_back_without_a_pull(images):
    project, registry = images.project, images.registry
    good = registry.push("shop", "1.0", "1.0")
    project.cli("release", "create", "1.0", "--image", good, check=True)
    shown = json.loads(project.cli("release", "show", "1.0", "--json", check=True).stdout)["release"]
    pinned = shown["image"]
    assert pinned == f"{registry.address}/shop@sha256:{shown['sha256']}"

    # a tag moved later changes nothing: the release is its digest
    registry.push("shop", "1.0", "1.0-moved")
    again = project.cli("release", "create", "1.0", "--image", good)
    assert again.returncode == 2 and "already exists with other content" in again.stderr

    project.cli("run", "1.0", check=True, timeout=300)
    assert registry.manifest_fetches(pinned) == 6  # each host pulled it once
    for hosts in HOSTS.values():
        for host in hosts:
            assert images.running(host) == ["1.0"], host

    bad = registry.push("shop", "1.1", "1.1", sick_on="web-")
    project.cli("release", "create", "1.1", "--image", bad, check=True)
    run = project.cli("run", "1.1", timeout=300)
    assert run.returncode == 1 and "web-" in run.stderr, run.stdout + run.stderr
    shown = json.loads(project.cli("release", "show", "1.1", "--json", check=True).stdout)["release"]
    assert [(s["stage"], s["status"]) for s in shown["stages"]] == [
        ("selftest", "passed"),
        ("test", "passed"),
        ("gray", "rolled_back"),
    ]
    for host in HOSTS["prod"]:
        assert images.running(host) == ["1.0"], host
    # the gray host's rollback started 1.0 from the image it had: no host fetched it again
    assert registry.manifest_fetches(pinned) == 6
    assert registry.manifest_fetches(shown["image"]) == 3  # dev-1, test-1 and the gray host
    assert images.running("dev-1") == ["1.1"]


def test_references_that_name_no_registry_or_tag_are_refused_before_anything_is_asked():
    for text, words in (
        ("shop:1.0", "names no registry"),
        ("library/shop:1.0", "names no registry"),
        ("127.0.0.1:5000/shop", "names no tag or digest"),
        ("127.0.0.1:5000/Shop:1", "not a valid reference"),
    ):
        with pytest.raises(Exception, match=words):
            parse_image(text)
    ref = parse_image("registry.example.com:443/team/shop:2.4.0")
    assert (ref.registry, ref.repository, ref.tag) == ("registry.example.com:443", "team/shop", "2.4.0")


def test_a_tag_the_registry_does_not_have_is_refused_and_nothing_is_registered(images):
    project, registry = images.project, images.registry
    result = project.cli("release", "create", "2.0", "--image", f"{registry.address}/shop:no-such-tag")
    assert result.returncode == 2
    assert f"registry {registry.address} has no tag no-such-tag of shop: push it first" in result.stderr
    unreachable = project.cli("release", "create", "2.0", "--image", "127.0.0.1:9/shop:2.0")
    assert unreachable.returncode == 2 and "registry 127.0.0.1:9 cannot be reached" in unreachable.stderr
    listed = json.loads(project.cli("release", "list", "--json", check=True).stdout)
    assert listed["releases"] == []


def test_a_run_spec_the_runtime_refuses_fails_at_prepare_before_any_host_switches(images):
    project, registry = images.project, images.registry
    playbook = project.dir / "playbooks" / "shop.yaml"
    playbook.write_text(playbook.read_text().replace("  name: shop\n", "  name: shop\n  network: no-such-net\n"))
    project.cli("release", "create", "1.0", "--image", registry.push("shop", "1.0", "1.0"), check=True)
    result = project.cli("run", "1.0")
    assert result.returncode == 1
    assert "podman refused to create the container of 1.0" in result.stderr and "no-such-net" in result.stderr
    assert images.running("dev-1") == []
    assert not (project.dir / "hosts" / "dev-1" / "current").exists()
    # the playbook fixed, the same release goes on
    playbook.write_text(playbook.read_text().replace("  network: no-such-net\n", ""))
    again = project.cli("run", "1.0", "--to", "selftest")
    assert again.returncode == 0, again.stdout + again.stderr
    assert images.running("dev-1") == ["1.0"]


@pytest.fixture(scope="module")
@starts("podman")
def secure_registry(tmp_path_factory):
    server = Registry(tmp_path_factory.mktemp("secure-registry"), secure=True)
    yield server
    server.close()


def test_a_registry_with_tls_and_credentials_is_resolved_and_pulled_from_with_the_secret_kept(
    images, secure_registry, monkeypatch
):
    project, registry = images.project, secure_registry
    monkeypatch.setenv("REG_USER", registry.user)
    monkeypatch.setenv("REG_PASSWORD", registry.password)
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text().replace(
            "registries:\n",
            f"registries:\n  {registry.address}: {{ca_file: {registry.ca}, username_env: REG_USER, "
            "password_env: REG_PASSWORD}\n",
        )
    )
    reference = registry.push("shop", "3.0", "3.0")
    project.cli("release", "create", "3.0", "--image", reference, check=True)
    run = project.cli("run", "3.0", "--to", "test", check=True, timeout=300)
    assert images.running("dev-1") == ["3.0"] and images.running("test-1") == ["3.0"]
    assert registry.password not in run.stdout + run.stderr
    auth = project.dir / "hosts" / "dev-1" / ".releaser" / "secrets" / "registry" / "config.json"
    assert auth.stat().st_mode & 0o777 == 0o600
    for path in project.dir.rglob("*"):
        if path.is_file() and path.name != "config.json":
            assert registry.password.encode() not in path.read_bytes(), path

    # without the credentials the registry refuses, and releaser says what to set
    monkeypatch.delenv("REG_PASSWORD")
    refused = project.cli("release", "create", "3.1", "--image", reference)
    assert refused.returncode == 2 and "refused to show shop (401)" in refused.stderr


def test_keep_releases_prunes_old_containers_and_images_and_secrets_reach_the_container(images, monkeypatch):
    project, registry = images.project, images.registry
    monkeypatch.setenv("SHOP_TOKEN", "tok-9f8e7d6c5b4a")
    config = project.dir / "environments.yaml"
    config.write_text(
        config.read_text().replace(
            "    playbook: shop\n", "    playbook: shop\n    secrets: {TOKEN: {env: SHOP_TOKEN}}\n", 1
        )
    )
    conf = podman_conf(images.podman_dirs["dev-1"])
    for version in ("1.0", "1.1", "1.2", "1.3"):
        project.cli("release", "create", version, "--image", registry.push("shop", version, version), check=True)
        project.cli("run", version, "--to", "selftest", check=True, timeout=120)
    # keep_releases: 2 -> the current release, and the one it replaced
    names = sorted(podman(conf, "ps", "-a", "--format", "{{.Names}}").stdout.split())
    assert names == ["shop-1.2", "shop-1.3"]
    assert len(podman(conf, "images", "-q").stdout.split()) == 2
    assert sorted(p.name for p in (project.dir / "hosts" / "dev-1" / "releases").iterdir()) == ["1.2", "1.3"]
    env = podman(conf, "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", "shop-1.3").stdout
    assert "TOKEN=tok-9f8e7d6c5b4a" in env.split("\n")  # the container has it; nothing releaser wrote does
    for path in project.dir.rglob("*"):
        if path.is_file() and path.name != "app.env":
            assert b"tok-9f8e7d6c5b4a" not in path.read_bytes(), path


def test_a_container_that_crashes_at_start_fails_fast_despite_its_restart_policy_and_is_rolled_back(images):
    project, registry = images.project, images.registry
    project.cli("release", "create", "1.0", "--image", registry.push("shop", "1.0", "1.0"), check=True)
    project.cli("run", "1.0", "--to", "selftest", check=True, timeout=120)
    project.cli("release", "create", "1.1", "--image", registry.push("shop", "1.1", "1.1", crash=True), check=True)
    result = project.cli("run", "1.1", "--to", "selftest", timeout=120)
    assert result.returncode == 1
    assert (
        "the container of 1.1 exited (status 3) before it was ready" in result.stderr
        and "crashing as asked" in result.stderr
    )
    assert "not ready within" not in result.stderr  # not waited out for ready_timeout
    assert images.running("dev-1") == ["1.0"]


@pytest.mark.nginx
@pytest.mark.podman
@pytest.mark.sshd
def test_gray_by_users_through_nginx_with_image_releases_and_a_bad_one_routed_back(tmp_path):
    """prod (5 hosts over sshd, each with its podman) behind a real nginx: gray gives 10% of users
    the new image, sticky by cookie; a sick image is caught at gray and its users routed back."""
    import urllib.request

    from tests.harness.faults import Lab

    lab = Lab.create(tmp_path, prod_hosts=5, routed=True, images=True)
    try:
        lab.run("run", lab.new_release())
        good = lab.new_release()
        lab.run("promote", good, "--to", "gray", "--force", "--reason", "gray by users")

        def served_to(user: str) -> str:
            request = urllib.request.Request(
                f"http://127.0.0.1:{lab.nginx.port}/version", headers={"Cookie": f"uid={user}"}
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.read().decode().split()[-1]

        first = {f"user-{i}": served_to(f"user-{i}") for i in range(300)}
        share = sum(version == good for version in first.values()) / len(first)
        assert 0.05 <= share <= 0.15, share
        assert all(served_to(user) == version for user, version in list(first.items())[:60])  # sticky
        lab.run("promote", good)
        assert {served_to(f"user-{i}") for i in range(30)} == {good}

        bad = lab.new_release(sick=True)
        stopped = lab.cli("promote", bad, "--to", "gray", "--force", "--reason", "a bad image")
        assert stopped.returncode == 1, stopped.stderr
        assert {served_to(f"user-{i}") for i in range(100)} == {good}
        assert not lab.problems()
    finally:
        lab.close()
