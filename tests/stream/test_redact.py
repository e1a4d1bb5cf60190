"""One list of secret names, and every redactor agrees on it: the log lines, the
Kafka clients' option logs, and the printed configuration."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest

from streamgmm.service.config import dump_config, from_dict
from streamgmm.service.schema import Config, KafkaConfig
from streamgmm.stream.kafka_io import redact_options
from streamgmm.stream.logs import setup_logging
from streamgmm.stream.redact import REDACTED, SECRET_WORDS, is_secret, redact, redact_text

# Every name any of the former three word lists took as secret (logs: password,
# passwd, secret, token; the schema: password, secret, token; the Kafka clients:
# password, secret, token, key), less a bare 'key', and the names the list adds.
SECRETS = ("sasl_plain_password", "ssl_password", "db_passwd", "client_secret", "api_token",
           "sasl_oauth_token_provider", "ssl_keyfile", "gcp_credentials", "api_key",
           "private_key", "apikey", "SASL_PLAIN_PASSWORD")
# A record's key, the key of the event id, and kafka-python settings that hold no secret.
PLAIN = ("key", "features.key", "key_deserializer", "sasl_plain_username", "ssl_cafile",
         "bootstrap_servers", "security_protocol")
MINIMAL = {"source": {"type": "stdin"}, "features": {"fields": [{"name": "amount"}]}}


def test_the_names_and_the_words():
    assert all(is_secret(name) for name in SECRETS)
    assert not any(is_secret(name) for name in PLAIN)
    assert all(any(word in name.lower() for word in SECRET_WORDS) for name in SECRETS)


@pytest.mark.parametrize("name", SECRETS + PLAIN)
def test_every_redactor_agrees(name):
    secret = name in SECRETS
    shown = REDACTED if secret else "v4lue"
    assert redact_options({name: "v4lue"})[name] == shown
    assert redact({"kafka": [{name: "v4lue"}]})["kafka"][0][name] == shown
    assert (redact_text(f"connecting with {name}=v4lue, n=1") ==
            f"connecting with {name}={shown}, n=1")
    out = io.StringIO()
    handler = setup_logging("INFO", "json", stream=out)
    try:
        logging.getLogger("streamgmm.test").info("options %s", {name: "v4lue"},
                                                 extra={"fields": {name: "v4lue"}})
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(out.getvalue())
    assert line[name] == shown and ("v4lue" in line["event"]) is not secret


def test_the_printed_configuration_hides_the_same_names():
    managed = {f.name for f in dataclasses.fields(KafkaConfig)} | {"key_deserializer"}
    names = {n.lower().replace(".", "_") for n in SECRETS + PLAIN}
    options = {n: f"v-{n}" for n in names - managed}
    dedicated = {"sasl_plain_password": "v4lue", "ssl_password": "v4lue",
                 "ssl_keyfile": "/etc/key.pem", "ssl_cafile": "/etc/ca.pem"}
    config = from_dict(Config, {**MINIMAL, "source": {"type": "stdin", "kafka": {
        "client_options": options, **dedicated}}})
    kafka = config.redacted()["source"]["kafka"]
    for name in options:
        assert (kafka["client_options"][name] == REDACTED) is is_secret(name), name
    for name, value in dedicated.items():
        assert kafka[name] == (REDACTED if is_secret(name) else value), name
    text = dump_config(config)
    for name, value in {**options, **dedicated}.items():
        assert (value in text) is not is_secret(name), name


def test_unset_secrets_stay_visible_as_unset():
    assert redact_options({"ssl_password": None}) == {"ssl_password": None}
    assert redact({"sasl_plain_password": None}) == {"sasl_plain_password": None}
    plain = from_dict(Config, MINIMAL).redacted()
    assert plain["source"]["kafka"]["sasl_plain_password"] is None
