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
