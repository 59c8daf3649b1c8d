"""How sf2pg authenticates to Snowflake, chosen from the environment: password, key pair (a file or the
key itself, optionally encrypted), programmatic access token, OAuth token; exactly one at a time.

Over the wire: the emulator verifies a key pair's JWT against the public key registered with
``ALTER USER ... SET RSA_PUBLIC_KEY``, as Snowflake does, and records which authenticator each login
used and a digest of its token. It cannot judge a token itself (it has no token issuer): that a PAT or
an OAuth token is valid is Snowflake's to decide, so those tests pin what sf2pg sends.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
import snowflake.connector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dagster import EnvVar, build_resources

from sf2pg.dagster.resources import snowflake_resource
from sf2pg.source.snowflake_connection import AUTH_VARIABLES
from sf2pg.source.snowflake_session import SnowflakeSettingsError
from sf2pg_tests.harness import Stack, World


def make_key(passphrase: str | None = None) -> tuple[str, str]:
    """A new RSA key: (its PEM, encrypted with ``passphrase`` if given; its public key as Snowflake takes it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(public).decode()


def use_only(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Authenticate with exactly these SNOWFLAKE_* variables (the stack's password is unset)."""
    for name in (*AUTH_VARIABLES, "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def login_and_query(stack: Stack) -> dict:
    with snowflake_resource(resolve=True).get_connection() as conn:
        assert conn.cursor().execute("SELECT 1").fetchone() == (1,)
    return stack.emulator.logins()[-1]


def test_an_inline_encrypted_key_logs_in_by_key_pair_verified_by_the_server(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    pem, public = make_key("open sesame")
    world.sf_exec(f"ALTER USER fake SET RSA_PUBLIC_KEY = '{public}'")
    use_only(monkeypatch, SNOWFLAKE_PRIVATE_KEY=pem, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE="open sesame")
    login = login_and_query(world.stack)
    assert login["authenticator"] == "SNOWFLAKE_JWT" and not login["password_sent"]


def test_an_inline_key_whose_newlines_were_escaped_loads_too(world: World, monkeypatch: pytest.MonkeyPatch):
    pem, public = make_key()
    world.sf_exec(f"ALTER USER fake SET RSA_PUBLIC_KEY_2 = '{public}'")
    use_only(monkeypatch, SNOWFLAKE_PRIVATE_KEY=pem.replace("\n", "\\n"))  # as some secret stores hand it out
    assert login_and_query(world.stack)["authenticator"] == "SNOWFLAKE_JWT"


def test_a_key_file_logs_in_by_key_pair(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path):
    pem, public = make_key("file pass")
    world.sf_exec(f"ALTER USER fake SET RSA_PUBLIC_KEY = '{public}'")
    path = tmp_path / "rsa_key.p8"
    path.write_text(pem)
    use_only(monkeypatch, SNOWFLAKE_PRIVATE_KEY_PATH=str(path), SNOWFLAKE_PRIVATE_KEY_PASSPHRASE="file pass")
    assert login_and_query(world.stack)["authenticator"] == "SNOWFLAKE_JWT"


def test_a_key_snowflake_does_not_hold_is_refused_by_snowflake(world: World, monkeypatch: pytest.MonkeyPatch):
    _, public = make_key()
    world.sf_exec(f"ALTER USER fake SET RSA_PUBLIC_KEY = '{public}'")
    other, _ = make_key()  # never registered
    use_only(monkeypatch, SNOWFLAKE_PRIVATE_KEY=other)
    with pytest.raises(snowflake.connector.errors.Error, match="JWT token is invalid"):
        login_and_query(world.stack)


def test_a_key_that_does_not_open_is_named_by_its_variable_never_shown_and_not_retried(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    pem, _ = make_key("the right one")
    use_only(monkeypatch, SNOWFLAKE_PRIVATE_KEY=pem, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE="Wrong-Canary-91c2")
    with pytest.raises(SnowflakeSettingsError) as caught:  # an InputError: the run does not retry it
        login_and_query(stack)
    message = str(caught.value)
    assert message.startswith("SNOWFLAKE_PRIVATE_KEY: the private key cannot be loaded")
    assert "Wrong-Canary-91c2" not in message and pem.splitlines()[1] not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_programmatic_access_token_logs_in_with_the_pat_authenticator(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    use_only(monkeypatch, SNOWFLAKE_PAT="pat-token-for-a-service-user")
    login = login_and_query(stack)
    assert login["authenticator"] == "PROGRAMMATIC_ACCESS_TOKEN" and not login["password_sent"]
    assert login["token_sha256"] == hashlib.sha256(b"pat-token-for-a-service-user").hexdigest()


def test_an_oauth_token_logs_in_with_the_oauth_authenticator(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    use_only(monkeypatch, SNOWFLAKE_OAUTH_TOKEN="oauth-access-token")
    login = login_and_query(stack)
    assert login["authenticator"] == "OAUTH"
    assert login["token_sha256"] == hashlib.sha256(b"oauth-access-token").hexdigest()


def test_a_code_locations_token_stays_an_environment_variable_until_the_run_reads_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    use_only(monkeypatch, SNOWFLAKE_PAT="read-at-run-time")
    resource = snowflake_resource(resolve=False)  # what the Dagster definitions hold
    assert resource.token == EnvVar("SNOWFLAKE_PAT") and isinstance(resource.token, EnvVar)
    with build_resources({"snowflake": resource}) as built, built.snowflake.get_connection() as conn:  # a run
        conn.cursor().execute("SELECT 1")
    assert stack.emulator.logins()[-1]["token_sha256"] == hashlib.sha256(b"read-at-run-time").hexdigest()


def test_two_ways_to_authenticate_at_once_are_refused_naming_both(monkeypatch: pytest.MonkeyPatch):
    env = {"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u", "SNOWFLAKE_PASSWORD": "p", "SNOWFLAKE_PAT": "t"}
    for resolve in (True, False):
        with pytest.raises(SnowflakeSettingsError, match="SNOWFLAKE_PASSWORD, SNOWFLAKE_PAT are all set; set only one"):
            snowflake_resource(env, resolve=resolve)
