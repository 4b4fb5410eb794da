"""`tollway health` finds the service PID 1 runs, as a container's HEALTHCHECK needs."""

from __future__ import annotations

from cli.health import check, service_of_pid1


def test_the_service_is_read_from_pid_1s_command_line(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/usr/local/bin/python\0/usr/local/bin/tollway\0webhook\0--port\x008081\0")
    assert service_of_pid1(cmdline) == "webhook"
    cmdline.write_bytes(b"/usr/local/bin/tollway\0api\0serve\0")
    assert service_of_pid1(cmdline) == "api"
    cmdline.write_bytes(b"/bin/sh\0-c\0sleep 1\0")
    assert service_of_pid1(cmdline) is None
    assert service_of_pid1(tmp_path / "missing") is None


def test_an_unknown_service_is_not_serving():
    ok, detail = check("nginx", {})
    assert not ok and "unknown service 'nginx'" in detail


def test_authz_health_says_when_spool_files_wait(tmp_path):
    """Files left in the spool directory are not loaded (another store's, or authz's own
    while its Redis was away at start): the health line says so, and where to look."""
    from devkit.stack import free_port
    from tollway import spool
    from tollway.spool import SpoolRow

    spool.write(tmp_path, "authz-1", "another-store", [SpoolRow("acct", 0, 4, "w")])
    env = {"TOLLWAY_SPOOL_DIR": str(tmp_path), "TOLLWAY_AUTHZ_MODE": "http",
           "TOLLWAY_AUTHZ_PORT": str(free_port())}  # fmt: skip
    ok, detail = check("authz", env)
    assert not ok  # nothing listens there
    assert "1 spool files (4 requests) wait" in detail and "tollway usage spool list" in detail
