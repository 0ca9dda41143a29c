"""SSRF guard: every check here resolves only; nothing is ever contacted."""

from __future__ import annotations

import ipaddress

import pytest

from relapp.drivers.netguard import BlockedTarget, blocked_reason, check_url, resolve_target


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://localhost:6379",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://10.0.0.5/",
        "http://[::ffff:127.0.0.1]/",
        "ftp://x",
        "http://0.0.0.0/",
        "http://0x7f.1/",  # 127.0.0.1 in inet_aton's shorthand
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
        "http://[64:ff9b::a00:5]/",  # NAT64 around 10.0.0.5
        "http://100.64.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://224.0.0.1/",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http:///no-host",
        "http://example.com\\@127.0.0.1/",
        "http://exa mple.com/",
        "http://127.0.0.1:99999/",
    ],
)
def test_internal_and_malformed_targets_are_blocked(url: str) -> None:
    with pytest.raises(BlockedTarget):
        check_url(url)


def test_blocked_message_names_the_reason_and_the_way_out() -> None:
    with pytest.raises(BlockedTarget, match="loopback.*allow_hosts"):
        check_url("http://localhost:6379")


def test_any_internal_answer_blocks_a_name() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "127.0.0.1"]

    with pytest.raises(BlockedTarget, match="127.0.0.1"):
        check_url("https://mixed.relapp-test.invalid/", resolver=resolver)


def test_public_answer_passes_and_is_pinned() -> None:
    target = resolve_target(
        "https://ci.relapp-test.invalid/hook?x=1",
        resolver=lambda host, port: ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    )
    assert target.addresses == ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    assert (target.host, target.port, target.path) == ("ci.relapp-test.invalid", 443, "/hook?x=1")
    assert target.host_header == "ci.relapp-test.invalid"
    assert target.display() == "https://ci.relapp-test.invalid/hook"


def test_public_ip_literal_passes() -> None:
    check_url("https://1.1.1.1/")  # numeric: resolved locally, nothing is sent


def test_unresolvable_name_is_blocked_with_a_sentence() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")  # no DNS query leaves the machine

    with pytest.raises(BlockedTarget, match="could not be resolved"):
        check_url("https://nothing.relapp-test.invalid/", resolver=resolver)


@pytest.mark.parametrize(
    ("url", "allow_hosts", "allowed"),
    [
        ("http://127.0.0.1:8080/", ["127.0.0.1:8080"], True),
        ("http://127.0.0.1:8080/", ["127.0.0.1"], True),
        ("http://127.0.0.1:8081/", ["127.0.0.1:8080"], False),
        ("http://LOCALHOST:8080/", ["localhost:8080"], True),
        ("http://localhost/", ["localhost:80"], True),
        ("http://[::1]:8080/", ["[::1]:8080"], True),
        ("http://[::1]:8080/", ["::1"], True),
        ("http://[::1]:8080/", ["127.0.0.1:8080"], False),
        ("http://localhost:8080/", ["127.0.0.1:8080"], False),  # the name is what is allowed
    ],
)
def test_allow_hosts_matches_host_or_host_and_port(
    url: str, allow_hosts: list[str], allowed: bool
) -> None:
    if allowed:
        check_url(url, allow_hosts)
    else:
        with pytest.raises(BlockedTarget):
            check_url(url, allow_hosts)


def test_allow_hosts_does_not_lift_the_scheme_rule() -> None:
    with pytest.raises(BlockedTarget, match="http and https"):
        check_url("gopher://127.0.0.1:6379/", ["127.0.0.1:6379"])


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("8.8.8.8", False),
        ("1.1.1.1", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("127.0.0.2", True),
        ("10.1.2.3", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("169.254.10.10", True),
        ("100.127.255.255", True),
        ("0.1.2.3", True),
        ("192.0.2.1", True),
        ("198.18.0.1", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("239.255.255.250", True),
        ("::", True),
        ("fc00::1", True),
        ("fec0::1", True),
        ("ff02::1", True),
        ("2001:db8::1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", True),  # Teredo around 10.0.0.1
    ],
)
def test_blocked_reason(address: str, blocked: bool) -> None:
    assert (blocked_reason(ipaddress.ip_address(address)) is not None) is blocked


# -- issue 9, finding 10: allow_hosts opens private addresses, never metadata or link-local ------


@pytest.mark.parametrize(
    ("url", "allow_hosts"),
    [
        ("http://169.254.169.254/latest/meta-data/", ["169.254.169.254"]),
        ("http://169.254.169.254:80/computeMetadata/v1/", ["169.254.169.254:80"]),
        ("http://169.254.170.2/v2/credentials", ["169.254.170.2"]),
        ("http://100.100.100.200/latest/meta-data/", ["100.100.100.200"]),
        ("http://[fd00:ec2::254]/latest/", ["[fd00:ec2::254]"]),
        ("http://[fe80::1]:8080/", ["fe80::1"]),
        ("http://169.254.1.1/", ["169.254.1.1"]),
        ("http://[::ffff:169.254.169.254]/", ["::ffff:169.254.169.254"]),
        ("http://168.63.129.16/machine", ["168.63.129.16"]),
    ],
)
def test_an_allow_listed_metadata_or_link_local_address_stays_blocked(
    url: str, allow_hosts: list[str]
) -> None:
    with pytest.raises(BlockedTarget, match="relapp never contacts such an address, whatever allow_hosts says"):
        check_url(url, allow_hosts)


def test_an_allow_listed_name_that_resolves_to_the_metadata_address_stays_blocked() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]  # what a hostile or rebinding DNS answer would say

    with pytest.raises(BlockedTarget) as caught:
        check_url("http://cd.relapp-test.invalid/hook", ["cd.relapp-test.invalid"], resolver)
    assert str(caught.value) == (
        "The host 'cd.relapp-test.invalid' resolves to 169.254.169.254, which is a cloud metadata "
        "address; relapp never contacts such an address, whatever allow_hosts says."
    )


@pytest.mark.parametrize("answer", ["10.0.0.5", "127.0.0.1", "192.168.1.20", "100.64.0.7", "fd12::5"])
def test_an_allow_listed_name_still_reaches_a_private_address(answer: str) -> None:
    target = resolve_target(
        "http://cd.relapp-test.invalid:8080/hook", ["cd.relapp-test.invalid:8080"],
        lambda host, port: [answer],
    )
    assert target.addresses == (answer,) and target.allowed_explicitly
    with pytest.raises(BlockedTarget, match="add 'cd.relapp-test.invalid' to allow_hosts"):
        resolve_target("http://cd.relapp-test.invalid:8080/hook", (), lambda host, port: [answer])


def test_the_webhook_driver_refuses_an_allow_listed_metadata_target() -> None:
    from relapp.drivers import DeployContext, Outcome, build_driver

    driver = build_driver({
        "kind": "webhook", "url": "http://169.254.169.254/latest/meta-data/iam/",
        "secret": "whsec-0123456789abcdef", "allow_hosts": ["169.254.169.254"]})
    ctx = DeployContext(deployment_id=1, attempt=1, project="shop", environment="prod",
                        version="1.0.0", tag="v1.0.0", sha="0" * 40)
    lines: list[str] = []
    result = driver.run(ctx, lines.append, lambda: False)
    assert result.outcome is Outcome.FAILED
    assert result.message == (
        "Webhook target refused: The address 169.254.169.254 is a cloud metadata address; "
        "relapp never contacts such an address, whatever allow_hosts says.")
    assert not any(line.startswith("POST ") for line in lines)  # nothing was sent
