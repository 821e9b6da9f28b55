"""Deployment credentials and config: what `fedsynth certs` / `keys` write, and what the
coordinator and client refuse before starting anything."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

from fedsynth.common.deploy.credentials import (
    CertificateRequest,
    check_node_private_key,
    check_node_public_key,
    generate_node_keys,
    issue_certificates,
)
from fedsynth.common.errors import FedsynthError
from fedsynth.server.run_config import run_config_for, settings_from_run_config
from fedsynth.server.deployment_config import CoordinatorOptions, load_deployment_config, prepare

REPO = Path(__file__).resolve().parents[1]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_certificates_have_sans_chain_and_private_keys(tmp_path):
    issued = issue_certificates(CertificateRequest(tmp_path / "c", sans=("localhost", "127.0.0.1", "coord.example")))
    assert _mode(issued.ca_key) == 0o600 and _mode(issued.server_key) == 0o600
    assert _mode(issued.server_cert) == 0o644
    ca = x509.load_pem_x509_certificate(issued.ca_cert.read_bytes())
    srv = x509.load_pem_x509_certificate(issued.server_cert.read_bytes())
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "coord.example"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    srv.verify_directly_issued_by(ca)  # raises if the chain is wrong
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = load_pem_private_key(issued.server_key.read_bytes(), None)
    assert key.public_key().public_numbers() == srv.public_key().public_numbers()
    # no temporary files left behind, and no silent replacement of a CA
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        ".fedsynth-output.json", "ca.key", "ca.pem", "server.key", "server.pem"]
    with pytest.raises(FedsynthError, match="refusing to replace a CA"):
        issue_certificates(CertificateRequest(tmp_path / "c"))


def test_bad_san_is_refused(tmp_path):
    with pytest.raises(FedsynthError, match="not an IP address or DNS name"):
        issue_certificates(CertificateRequest(tmp_path, sans=("bad name!",)))
    assert not any(tmp_path.iterdir())


def test_node_keys_are_openssh_ec_and_private(tmp_path):
    pair = generate_node_keys(tmp_path, "hospital-a")
    assert _mode(pair.private_key) == 0o600
    key = load_ssh_private_key(pair.private_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert pair.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert check_node_public_key(pair.public_key) == pair.fingerprint
    assert check_node_private_key(pair.private_key) == pair.private_key
    with pytest.raises(FedsynthError, match="already exists"):
        generate_node_keys(tmp_path, "hospital-a")
    with pytest.raises(FedsynthError, match="--name"):
        generate_node_keys(tmp_path, "../escape")


def test_keys_with_open_permissions_or_swapped_files_are_refused(tmp_path):
    pair = generate_node_keys(tmp_path, "n")
    pair.private_key.chmod(0o644)
    with pytest.raises(FedsynthError, match="too open"):
        check_node_private_key(pair.private_key)
    pair.private_key.chmod(0o600)
    with pytest.raises(FedsynthError, match="private key; register the .pub"):
        check_node_public_key(pair.private_key)
    with pytest.raises(FedsynthError, match="not an unencrypted OpenSSH private key"):
        bogus = tmp_path / "bogus"
        bogus.write_text("hello")
        bogus.chmod(0o600)
        check_node_private_key(bogus)


def test_example_config_maps_onto_plan_and_secagg():
    cfg = load_deployment_config(REPO / "examples" / "federation.toml")
    assert cfg.plan.rounds == 2 and cfg.plan.local_epochs == 0.5 and cfg.plan.model.model == "vae"
    assert cfg.secagg.num_shares == 1.0 and cfg.secagg.reconstruction_threshold == 0.67
    assert cfg.wait_timeout == 300


@pytest.mark.parametrize("text, match", [
    ("[plan]\nrounds = 2\nround = 3\n", r"unknown key\(s\) \['round'\] in \[plan\]"),
    ("[plan]\nschema_hash = 'x'\n", r"unknown key\(s\) \['schema_hash'\]"),
    ("[plan]\nrounds = 0\n", r"plan.rounds = 0"),
    ("[plan.model]\nmodel = 'gpt'\n", r"plan.model.model = 'gpt'"),
    ("wait_timeout = -1\n", r"wait_timeout = -1"),
    ("rounds = 3\n", r"unknown key\(s\) \['rounds'\]"),
    ("[plan\n", r"not valid TOML"),
])
def test_config_errors_name_file_and_key(tmp_path, text, match):
    p = tmp_path / "fed.toml"
    p.write_text(text)
    with pytest.raises(FedsynthError, match=match) as info:
        load_deployment_config(p)
    assert str(p) in str(info.value)


def test_coordinator_refuses_to_start_without_tls_or_keys(tmp_path, adult_paths):
    _, schema = adult_paths
    cfg = REPO / "examples" / "federation.toml"
    with pytest.raises(FedsynthError, match="--certs DIR is required"):
        prepare(CoordinatorOptions(config=cfg, out_dir=tmp_path / "o", schema=schema))
    issue_certificates(CertificateRequest(tmp_path / "certs"))
    with pytest.raises(FedsynthError, match="--authorized-key"):
        prepare(CoordinatorOptions(config=cfg, out_dir=tmp_path / "o", schema=schema, certs=tmp_path / "certs"))
    pub = generate_node_keys(tmp_path / "k", "a").public_key
    with pytest.raises(FedsynthError, match="impossible with --insecure"):
        prepare(CoordinatorOptions(config=cfg, out_dir=tmp_path / "o", schema=schema, insecure=True,
                                   authorized_keys=[pub]))
    with pytest.raises(FedsynthError, match="only 1 key"):
        prepare(CoordinatorOptions(config=cfg, out_dir=tmp_path / "o", schema=schema, certs=tmp_path / "certs",
                                   authorized_keys=[pub], clients=2))


def test_run_config_round_trip_carries_plan_with_schema_hash(tmp_path, adult_paths, adult_schema):
    _, schema = adult_paths
    issue_certificates(CertificateRequest(tmp_path / "certs"))
    pubs = [generate_node_keys(tmp_path / "k", n).public_key for n in ("a", "b")]
    prep = prepare(CoordinatorOptions(config=REPO / "examples" / "federation.toml", out_dir=tmp_path / "o",
                                      schema=schema, certs=tmp_path / "certs", authorized_keys=pubs))
    assert prep.settings.clients == 2
    assert prep.settings.plan.schema_hash == adult_schema.hash()
    back = settings_from_run_config(run_config_for(prep.settings))
    assert back == prep.settings
