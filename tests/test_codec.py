"""The payload codec, its data keys and the pseudonyms, without a server: what each promises."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

from omnicart.routing import customer_workflow_id
from omnicart.security.codec import ENCODING, KEY_ID, EncryptionCodec, UndecryptablePayload
from omnicart.security.codec_chain import CodecChain
from omnicart.security.data_keys import DataKeyStore
from omnicart.security.keys import DEV_KEY_FILE, KeyConfigError, MasterKeys, configured_keys, new_key_spec
from omnicart.security.pseudonym import customer_ref, keyed_hash
from omnicart.security.redact import redact
from omnicart.storage import get_engine

SECRET = b'{"email": "grace@example.org", "phone": "+14155550199"}'
OWNER = "customer/cus_grace"


def plain(data: bytes = SECRET) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def store(tmp_path: Path, keys: str, cache_seconds: float = 30.0) -> DataKeyStore:
    return DataKeyStore(get_engine(f"sqlite:///{tmp_path / 'keys.db'}"), MasterKeys.parse(keys), cache_seconds)


def codec(data_keys: DataKeyStore) -> EncryptionCodec:
    return EncryptionCodec(data_keys.master, data_keys)


def for_workflow(codec: EncryptionCodec, workflow_id: str) -> EncryptionCodec:
    return codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id=workflow_id))


async def test_a_round_trip_hides_the_bytes_and_gives_them_back(tmp_path: Path) -> None:
    master_only = codec(store(tmp_path, new_key_spec("k1")))
    [sealed] = await master_only.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"k1"
    assert b"grace" not in sealed.data and b"4155550199" not in sealed.data
    assert await master_only.decode([sealed]) == [plain()]


async def test_a_customers_workflow_and_its_activities_use_that_customers_own_key(tmp_path: Path) -> None:
    spec = new_key_spec("k1")
    keys = store(tmp_path, spec)
    [from_workflow] = await for_workflow(codec(keys), OWNER).encode([plain()])
    activity = ActivitySerializationContext(
        namespace="default", activity_id="1", activity_type="send_message", activity_task_queue="q",
        workflow_id=OWNER, workflow_type="CustomerWorkflow", is_local=False,
    )
    [from_activity] = await CodecChain([codec(keys)]).with_context(activity).encode([plain()])
    [other] = await for_workflow(codec(keys), "customer/cus_other").encode([plain()])

    key_id = from_workflow.metadata[KEY_ID].decode()
    assert key_id.startswith("dek/") and from_activity.metadata[KEY_ID].decode() == key_id
    assert other.metadata[KEY_ID].decode() not in (key_id, "k1")
    # Decoding needs no context (the codec server has none), nor this process's cache.
    assert await codec(store(tmp_path, spec)).decode([from_workflow, from_activity]) == [plain(), plain()]


async def test_rotation_encrypts_with_the_new_key_and_still_reads_the_old_one(tmp_path: Path) -> None:
    old_spec, new_spec = new_key_spec("k1"), new_key_spec("k2")
    before = codec(store(tmp_path / "a", old_spec))
    [old_payload] = await before.encode([plain()])
    [old_customer_payload] = await for_workflow(codec(store(tmp_path / "shared", old_spec)), OWNER).encode([plain()])

    rotated = store(tmp_path / "shared", f"{new_spec},{old_spec}")
    after = codec(rotated)
    [new_payload] = await after.encode([plain()])
    assert new_payload.metadata[KEY_ID] == b"k2"
    assert await after.decode([old_payload, new_payload, old_customer_payload]) == [plain()] * 3
    with pytest.raises(UndecryptablePayload, match="'k2'"):
        await before.decode([new_payload])


async def test_an_unknown_key_id_a_relabelled_payload_and_tampered_bytes_are_refused(tmp_path: Path) -> None:
    mine = codec(store(tmp_path / "mine", f"{new_key_spec('k2')},{new_key_spec('k1')}"))
    stranger = codec(store(tmp_path / "other", new_key_spec("k9")))
    [sealed] = await mine.encode([plain()])
    with pytest.raises(UndecryptablePayload, match="not configured"):
        await stranger.decode([sealed])

    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID] = b"k1"
    with pytest.raises(UndecryptablePayload, match="fails authentication"):
        await mine.decode([relabelled])

    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(UndecryptablePayload, match="fails authentication"):
        await mine.decode([tampered])


async def test_deleting_a_customers_data_key_makes_their_payloads_unreadable_for_good(tmp_path: Path) -> None:
    spec = new_key_spec("k1")
    keys = store(tmp_path, spec)
    [sealed] = await for_workflow(codec(keys), OWNER).encode([plain()])
    [unrelated] = await for_workflow(codec(keys), "customer/cus_other").encode([plain()])
    assert await codec(keys).decode([sealed]) == [plain()]  # and now it is cached

    assert keys.delete(OWNER) is True
    assert keys.delete(OWNER) is False
    for reader in (codec(keys), codec(store(tmp_path, spec))):  # the same process, and a fresh one
        with pytest.raises(UndecryptablePayload, match="forgotten"):
            await reader.decode([sealed])
        assert await reader.decode([unrelated]) == [plain()]
    [again] = await for_workflow(codec(keys), OWNER).encode([plain()])
    assert again.metadata[KEY_ID] != sealed.metadata[KEY_ID]


def test_the_key_setting_is_checked_and_names_what_is_wrong() -> None:
    for bad, complaint in [
        (None, "OMNICART_ENCRYPTION_KEYS"),
        ("k1", "id:base64"),
        ("k1:not base64!", "not base64"),
        ("k1:c2hvcnQ=", "32 bytes"),
        (f"{new_key_spec('k1')},{new_key_spec('k1')}", "twice"),
        ("dek/1:" + new_key_spec().partition(":")[2], "id:base64"),
    ]:
        with pytest.raises(KeyConfigError, match=complaint):
            MasterKeys.parse(bad)
    parsed = MasterKeys.parse(SecretStr(f"{new_key_spec('k2')}, {new_key_spec('k1')}"))
    assert parsed.active_id == "k2" and set(parsed.keys) == {"k1", "k2"}


def test_emails_and_phone_numbers_never_appear_in_workflow_ids() -> None:
    secret = SecretStr("shop secret")
    assert customer_workflow_id("cus_42") == "customer/cus_42"
    for personal in ("grace@example.org", "+14155550199", "0415 555 0199"):
        workflow_id = customer_workflow_id(personal)
        assert personal not in workflow_id and workflow_id.startswith("customer/h-")
        assert workflow_id == customer_workflow_id(personal)  # the same customer, the same workflow
        # Keyed: without the shop's secret, hashing a list of addresses does not find it.
        assert customer_ref(personal, secret) != customer_ref(personal, SecretStr("another secret"))
    assert keyed_hash("cus_42", secret) != keyed_hash("cus_43", secret)


def test_log_text_loses_addresses_and_phone_numbers_but_keeps_the_rest() -> None:
    text = "SendGrid answered 400: grace.h@example.org bounced; Twilio: +1 415 555 0199 unreachable (msg_4b1c)"
    assert redact(text) == "SendGrid answered 400: [email] bounced; Twilio: [phone] unreachable (msg_4b1c)"
    assert redact("2026-11-24 00:20:00 attempt 3") == "2026-11-24 00:20:00 attempt 3"


async def test_a_process_that_cached_a_forgotten_customers_key_encrypts_their_next_run_with_a_new_one(
    tmp_path: Path,
) -> None:
    spec = new_key_spec("k1")
    worker, api = store(tmp_path, spec), store(tmp_path, spec)  # two processes, one key table
    [before] = await for_workflow(codec(worker), OWNER).encode([plain()])
    assert api.delete(OWNER)
    [after] = await for_workflow(codec(worker), OWNER).encode([plain()])
    assert after.metadata[KEY_ID] != before.metadata[KEY_ID]
    assert await codec(api).decode([after]) == [plain()], "the new run stays readable everywhere"


def test_without_a_configured_key_the_key_omnicart_dev_keeps_is_used(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="OMNICART_ENCRYPTION_KEYS"):
        configured_keys(None, tmp_path)
    spec = new_key_spec("dev")
    (tmp_path / DEV_KEY_FILE).write_text(spec + "\n")
    assert configured_keys(None, tmp_path).get_secret_value() == spec
    assert configured_keys(SecretStr("k9:x"), tmp_path).get_secret_value() == "k9:x"


async def test_many_first_payloads_at_once_share_one_key_per_customer(tmp_path: Path) -> None:
    keys = store(tmp_path, new_key_spec("k1"))  # a fresh database: the table does not exist yet
    owners = [f"customer/cus_{index % 5}" for index in range(40)]
    sealed = await asyncio.gather(*(for_workflow(codec(keys), owner).encode([plain()]) for owner in owners))
    key_of: dict[str, set[bytes]] = {}
    for owner, [payload] in zip(owners, sealed, strict=True):
        key_of.setdefault(owner, set()).add(payload.metadata[KEY_ID])
    assert all(len(ids) == 1 for ids in key_of.values()) and len(key_of) == 5
    assert await codec(keys).decode([payload for [payload] in sealed]) == [plain()] * 40
