"""tasks.storage.ObjectStore and blocks.storage.ObjectStorage, against real back ends:
temporary folders (file://) and a moto S3 HTTP server on 127.0.0.1 (s3://), with a
flaky proxy in front of it for 5xx answers and dropped connections."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from cad2gltf.errors import (
    ConversionError,
    InternalError,
    InvalidInputError,
    NetworkError,
    StorageError,
    is_transient,
)
from tasks import storage as storage_mod
from tasks.storage import ObjectInfo, ObjectStore, PermanentStorageError, classify_storage_error
from tests.s3 import MotoS3, unused_endpoint

MiB = 1024 * 1024


def _part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, moto_s3) -> ObjectStore:
    """An empty store on each back end."""
    if request.param == "file":
        return ObjectStore((tmp_path / "store").as_uri())
    bucket = moto_s3.make_bucket()
    return ObjectStore(**moto_s3.store_kwargs(f"s3://{bucket}/base"))


@pytest.fixture
def s3_store(moto_s3) -> ObjectStore:
    bucket = moto_s3.make_bucket()
    return ObjectStore(**moto_s3.store_kwargs(f"s3://{bucket}/base"))


def _proxied_store(moto_s3, proxy, bucket: str | None = None) -> ObjectStore:
    bucket = bucket or moto_s3.make_bucket()
    return ObjectStore(**moto_s3.store_kwargs(f"s3://{bucket}/base",
                                              endpoint_url=proxy.endpoint_url))


# --------------------------------------------------------------------------- round trips


def test_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    payload = b"0\nSECTION\n" + os.urandom(200_000)
    src = tmp_path / "in.dxf"
    src.write_bytes(payload)

    url = store.put_file("jobs/j1/in.dxf", src, content_type="image/vnd.dxf")
    assert url == store.key_url("jobs/j1/in.dxf")
    assert url.startswith(store.base_url + "/")
    assert store.put_bytes("jobs/j1/out.glb", b"glTF" + bytes(100)) == store.key_url(
        "jobs/j1/out.glb")
    store.put_bytes("jobs/j2/out.glb", b"x")
    store.put_bytes("jobsX/other", b"y")

    for ref in ("jobs/j1/in.dxf", url):
        assert store.exists(ref)
        assert store.size(ref) == len(payload)
        assert store.read_head(ref) == payload[:65536]
        assert store.read_head(ref, 10) == payload[:10]
        assert store.sha256(ref) == hashlib.sha256(payload).hexdigest()
    assert store.exists("jobs/j1")  # a folder of objects
    assert not store.exists("jobs/j1/missing.dxf")

    dest = store.download(url, tmp_path / "dl" / "copy.dxf", chunk=4096)
    assert dest == tmp_path / "dl" / "copy.dxf" and dest.read_bytes() == payload
    assert _part_files(tmp_path / "dl") == []

    listed = store.list("jobs/")
    assert [o.key for o in listed] == ["jobs/j1/in.dxf", "jobs/j1/out.glb", "jobs/j2/out.glb"]
    first = listed[0]
    assert isinstance(first, ObjectInfo)
    assert first.url == url and first.size == len(payload)
    assert first.modified is not None and first.modified.tzinfo is not None
    assert abs((datetime.now(UTC) - first.modified).total_seconds()) < 600
    assert [o.key for o in store.list("jobs")] == [
        "jobs/j1/in.dxf", "jobs/j1/out.glb", "jobs/j2/out.glb", "jobsX/other"]
    assert [o.key for o in store.list("jobs/j1/o")] == ["jobs/j1/out.glb"]
    assert len(store.list()) == 4
    assert store.list("nothing/here/") == []

    store.delete("jobs/j1/out.glb")
    store.delete(url)
    store.delete("jobs/j1/in.dxf")  # already gone: not an error
    assert not store.exists(url)
    assert [o.key for o in store.list("jobs/")] == ["jobs/j2/out.glb"]


def test_overwrite_and_empty_objects(store: ObjectStore) -> None:
    store.put_bytes("a/b.bin", b"first")
    store.put_bytes("a/b.bin", b"second!")
    assert store.read_head("a/b.bin") == b"second!"
    store.put_bytes("a/empty", b"")
    assert store.size("a/empty") == 0
    assert store.read_head("a/empty") == b""
    assert store.sha256("a/empty") == hashlib.sha256(b"").hexdigest()


def test_s3_content_type_and_key_layout(s3_store: ObjectStore, moto_s3, tmp_path) -> None:
    src = tmp_path / "m.glb"
    src.write_bytes(b"glTF")
    s3_store.put_file("r/m.glb", src, content_type="model/gltf-binary")
    s3_store.put_bytes("r/m.json", b"{}", content_type="application/json")
    bucket = s3_store.base_url.removeprefix("s3://").split("/")[0]
    head = moto_s3.client.head_object(Bucket=bucket, Key="base/r/m.glb")
    assert head["ContentType"] == "model/gltf-binary"
    head = moto_s3.client.head_object(Bucket=bucket, Key="base/r/m.json")
    assert head["ContentType"] == "application/json"
    assert s3_store.key_url("r/m.glb") == f"s3://{bucket}/base/r/m.glb"


def test_s3_multipart_round_trip(s3_store: ObjectStore, tmp_path: Path) -> None:
    size = 2 * storage_mod.UPLOAD_PART_SIZE + 12345  # above the single-PUT threshold
    src = tmp_path / "big.bin"
    with src.open("wb") as fh:
        fh.write(os.urandom(size))
    s3_store.put_file("big/big.bin", src)
    assert s3_store.size("big/big.bin") == size
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert s3_store.sha256("big/big.bin") == digest


# --------------------------------------------------------------------------- sources


def test_sources_from_any_url(tmp_path: Path, moto_s3) -> None:
    other = moto_s3.make_bucket()
    moto_s3.client.put_object(Bucket=other, Key="in/a.dxf", Body=b"0\nSECTION\nS3")
    local = tmp_path / "src dir" / "b.dxf"  # a space: file URLs are percent-encoded
    local.parent.mkdir()
    local.write_bytes(b"0\nSECTION\nLOCAL")

    file_store = ObjectStore((tmp_path / "store").as_uri(), endpoint_url=moto_s3.endpoint_url,
                             key=moto_s3.key, secret=moto_s3.secret, region=moto_s3.region)
    s3_store = ObjectStore(**moto_s3.store_kwargs(f"s3://{moto_s3.make_bucket()}"))

    for st in (file_store, s3_store):
        assert st.read_head(f"s3://{other}/in/a.dxf") == b"0\nSECTION\nS3"
        assert st.size(local.as_uri()) == len(b"0\nSECTION\nLOCAL")
        assert st.read_head(str(local)) == b"0\nSECTION\nLOCAL"
        assert st.exists(local.as_uri()) and st.exists(f"s3://{other}/in/a.dxf")
        dl = st.download(f"s3://{other}/in/a.dxf", tmp_path / "dl" / "a.dxf")
        assert dl.read_bytes() == b"0\nSECTION\nS3"
        assert type(st.for_url(f"s3://{other}/in/a.dxf")).__name__ == "S3FileSystem"
        assert type(st.for_url(str(local))).__name__ == "LocalFileSystem"
        assert type(st.for_url(local.as_uri())).__name__ == "LocalFileSystem"

    # a file:// store borrows its S3 settings for s3:// sources; keys stay local
    assert type(file_store.for_url("some/key")).__name__ == "LocalFileSystem"
    assert type(s3_store.for_url("some/key")).__name__ == "S3FileSystem"
    assert file_store.s3.retries == 1


@pytest.mark.parametrize("bad", [
    "../evil", "a/../../etc/passwd", "a/./b", "/abs/key", "a\x00b", "", "  ", "~root/x",
    "a\nb",
])
def test_bad_keys_refused(store: ObjectStore, bad: str) -> None:
    for call in (lambda: store.put_bytes(bad, b"x"), lambda: store.key_url(bad),
                 lambda: store.delete(bad), lambda: store.list(bad) if bad.strip() else
                 store.put_bytes(bad, b"x")):
        with pytest.raises(InvalidInputError) as err:
            call()
        assert err.value.subcode == "BAD_FILENAME"
        assert not is_transient(err.value)


@pytest.mark.parametrize("bad", [
    "file:///tmp/../etc/passwd", "file://host/etc/passwd", "/tmp/x/../../etc/passwd",
    "/tmp/a\x00b", "http://example.invalid/a.dxf", "gs://bucket/key", "s3://", "s3://bucket",
    "s3://bucket/a/../b",
])
def test_bad_urls_refused(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        store.size(bad)
    assert err.value.subcode in ("BAD_URL", "BAD_FILENAME")


def test_bad_base_url() -> None:
    for bad in ("http://x/y", "file://host/x", "s3://", "relative/dir", "s3://b/../x"):
        with pytest.raises(ValueError):
            ObjectStore(bad)


# --------------------------------------------------------------------------- atomicity


def test_file_put_leaves_no_part_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    st = ObjectStore(root.as_uri())
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * MiB))
    st.put_file("a/b/c.bin", src)
    st.put_bytes("a/b/d.bin", b"data")
    assert sorted(p.name for p in (root / "a" / "b").iterdir()) == ["c.bin", "d.bin"]
    assert _part_files(root) == []


def test_file_put_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "store"
    st = ObjectStore(root.as_uri())
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2 * MiB))
    seen: list[Path] = []

    def half_then_fail(fh, out, chunk):
        out.write(fh.read(MiB))
        out.flush()
        seen.append(Path(out.name))
        assert Path(out.name).stat().st_size == MiB  # the part file really got bytes
        raise OSError(5, "disk went away")

    monkeypatch.setattr(storage_mod, "_copy_chunks", half_then_fail)
    with pytest.raises(StorageError) as err:
        st.put_file("out/model.glb", src)
    assert err.value.subcode == "UNAVAILABLE" and err.value.transient
    assert seen and seen[0].name.startswith(".model.glb.") and seen[0].name.endswith(".part")
    assert not (root / "out" / "model.glb").exists()
    assert _part_files(root) == []
    assert st.list() == []


def test_file_failed_rename_keeps_old_object(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "store"
    st = ObjectStore(root.as_uri())
    st.put_bytes("k.bin", b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage_mod.os, "replace", boom)
    with pytest.raises(StorageError):
        st.put_bytes("k.bin", b"new and longer")
    with pytest.raises(StorageError):
        st.put_bytes("fresh.bin", b"new")
    monkeypatch.undo()
    assert (root / "k.bin").read_bytes() == b"old"
    assert not (root / "fresh.bin").exists()
    assert _part_files(root) == []


def test_list_hides_part_files_of_killed_writers(tmp_path: Path) -> None:
    root = tmp_path / "store"
    st = ObjectStore(root.as_uri())
    st.put_bytes("r/a.glb", b"a")
    (root / "r" / ".b.glb.0123abcd.part").write_bytes(b"half")
    assert [o.key for o in st.list("r/")] == ["r/a.glb"]


def test_s3_failed_single_put_leaves_nothing(moto_s3, flaky_proxy) -> None:
    proxy = flaky_proxy(fail_first=1, methods=("PUT",), status=500)
    st = _proxied_store(moto_s3, proxy)
    with pytest.raises(StorageError):
        st.put_bytes("r/x.glb", b"data" * 1000)
    assert not st.exists("r/x.glb")


def test_s3_failed_multipart_upload_is_aborted(moto_s3, flaky_proxy, tmp_path) -> None:
    # the first PUT of a multipart upload is a part: failing it must abort the upload
    proxy = flaky_proxy(fail_first=1, methods=("PUT",), status=503)
    bucket = moto_s3.make_bucket()
    st = _proxied_store(moto_s3, proxy, bucket)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(2 * storage_mod.UPLOAD_PART_SIZE + 1))
    with pytest.raises(StorageError) as err:
        st.put_file("r/big.bin", src)
    assert err.value.transient
    assert not st.exists("r/big.bin")
    assert moto_s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    methods = [m for m, _, _ in proxy.requests]
    assert methods[0] == "POST" and "DELETE" in methods  # create ... abort


# --------------------------------------------------------------------------- errors


def test_missing_source_is_permanent_not_found(store: ObjectStore, tmp_path: Path) -> None:
    missing = store.key_url("no/such.dxf")
    for call in (lambda: store.size(missing), lambda: store.read_head(missing),
                 lambda: store.sha256(missing),
                 lambda: store.download(missing, tmp_path / "dl" / "x.dxf")):
        with pytest.raises(InvalidInputError) as err:
            call()
        assert err.value.subcode == "NOT_FOUND"
        assert err.value.code == "VALIDATION_ERROR"
        assert not err.value.transient and not is_transient(err.value)
        # the code string alone says the same (dead letters and the ledger keep strings)
        assert not is_transient(err.value.full_code)
    assert not (tmp_path / "dl" / "x.dxf").exists()
    assert _part_files(tmp_path) == []
    assert store.exists(missing) is False
    with pytest.raises(InvalidInputError) as err:
        store.put_file("x", tmp_path / "no-such-local-file")
    assert err.value.subcode == "NOT_FOUND"
    with pytest.raises(InvalidInputError) as err:
        store.size(str(tmp_path / "nope.dxf"))
    assert err.value.subcode == "NOT_FOUND"


def test_flaky_puts_are_transient_then_succeed(moto_s3, flaky_proxy) -> None:
    proxy = flaky_proxy(fail_first=2, methods=("PUT",), status=503)
    st = _proxied_store(moto_s3, proxy)
    for attempt in range(2):
        with pytest.raises(StorageError) as err:
            st.put_bytes("r/out.glb", b"glTF" * 100)
        exc = err.value
        assert type(exc) is StorageError, attempt
        assert exc.subcode == "UNAVAILABLE"
        assert exc.transient is True and is_transient(exc) and is_transient(exc.full_code)
        assert exc.details["aws_code"] == "SlowDown" and exc.details["http_status"] == 503
        assert not st.exists("r/out.glb")
    assert st.put_bytes("r/out.glb", b"glTF" * 100) == st.key_url("r/out.glb")
    assert st.read_head("r/out.glb") == b"glTF" * 100
    # exactly one HTTP request per call: neither botocore nor s3fs retried on their own
    assert proxy.count("PUT") == 3 and proxy.failed == 2
    assert [s for m, _, s in proxy.requests if m == "PUT"] == [503, 503, 200]


def test_botocore_retries_only_when_asked(moto_s3, flaky_proxy) -> None:
    proxy = flaky_proxy(fail_first=1, methods=("PUT",), status=503)
    st = ObjectStore(**moto_s3.store_kwargs(f"s3://{moto_s3.make_bucket()}",
                                            endpoint_url=proxy.endpoint_url, max_attempts=2))
    st.put_bytes("k", b"x")  # botocore's second attempt succeeds within one call
    assert [s for _, _, s in proxy.requests] == [503, 200]


def test_flaky_reads_are_transient(moto_s3, flaky_proxy, tmp_path) -> None:
    proxy = flaky_proxy(fail_first=3, methods=("GET", "HEAD"), status=500)
    st = _proxied_store(moto_s3, proxy)
    st.put_bytes("r/in.dxf", b"0\nSECTION\n")
    for call in (lambda: st.size("r/in.dxf"), lambda: st.read_head("r/in.dxf"),
                 lambda: st.download("r/in.dxf", tmp_path / "in.dxf")):
        with pytest.raises(StorageError) as err:
            call()
        assert err.value.subcode == "UNAVAILABLE" and is_transient(err.value)
    assert not (tmp_path / "in.dxf").exists() and _part_files(tmp_path) == []
    assert st.download("r/in.dxf", tmp_path / "in.dxf").read_bytes() == b"0\nSECTION\n"


def test_access_denied_is_permanent(moto_s3, flaky_proxy) -> None:
    proxy = flaky_proxy(fail_first=1, methods=("PUT",), status=403)
    st = _proxied_store(moto_s3, proxy)
    with pytest.raises(PermanentStorageError) as err:
        st.put_bytes("r/x", b"x")
    exc = err.value
    assert isinstance(exc, StorageError) and exc.code == "STORAGE_ERROR"
    assert exc.subcode == "ACCESS_DENIED" and exc.details["aws_code"] == "AccessDenied"
    assert exc.transient is False and not is_transient(exc)
    assert exc.to_dict()["transient"] is False


def test_missing_bucket_is_permanent_access_denied(moto_s3, tmp_path) -> None:
    st = ObjectStore(**moto_s3.store_kwargs("s3://no-such-bucket-here/base"))
    for call in (lambda: st.put_bytes("r/x", b"x"), lambda: st.list(),
                 lambda: st.exists("r/x")):
        with pytest.raises(PermanentStorageError) as err:
            call()
        assert err.value.subcode == "ACCESS_DENIED" and not is_transient(err.value)
        assert not is_transient(err.value.full_code)  # "STORAGE_ERROR/ACCESS_DENIED"


def test_refused_connection_is_network_error(moto_s3, tmp_path) -> None:
    st = ObjectStore(**moto_s3.store_kwargs("s3://bucket/base", endpoint_url=unused_endpoint()))
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    for call in (lambda: st.put_bytes("k", b"x"), lambda: st.put_file("k", src),
                 lambda: st.size("k"), lambda: st.exists("k"), lambda: st.list()):
        with pytest.raises(NetworkError) as err:
            call()
        assert err.value.subcode == "STORAGE_UNREACHABLE"
        assert err.value.transient and is_transient(err.value)


def test_dropped_connection_is_transient(moto_s3, flaky_proxy) -> None:
    # the proxy accepts, then resets without answering (aiohttp may replay an
    # idempotent PUT once on a fresh connection, so drop enough of them)
    proxy = flaky_proxy(fail_first=4, methods=("PUT",), mode="refuse")
    st = _proxied_store(moto_s3, proxy)
    with pytest.raises((StorageError, NetworkError)) as err:
        st.put_bytes("r/x", b"x" * 1000)
    assert is_transient(err.value)
    for _ in range(4):
        try:
            st.put_bytes("r/x", b"x" * 1000)
            break
        except (StorageError, NetworkError) as exc:
            assert is_transient(exc)
    assert st.read_head("r/x") == b"x" * 1000
    assert proxy.failed == 4


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(("exc", "cls", "subcode", "transient"), [
    (_client_error("NoSuchKey", 404), InvalidInputError, "NOT_FOUND", False),
    (_client_error("404", 404), InvalidInputError, "NOT_FOUND", False),
    (_client_error("AccessDenied", 403), PermanentStorageError, "ACCESS_DENIED", False),
    (_client_error("403", 403), PermanentStorageError, "ACCESS_DENIED", False),
    (_client_error("NoSuchBucket", 404), PermanentStorageError, "ACCESS_DENIED", False),
    (_client_error("InvalidAccessKeyId", 403), PermanentStorageError, "ACCESS_DENIED", False),
    (_client_error("EntityTooLarge", 400), PermanentStorageError, "REJECTED", False),
    (_client_error("SlowDown", 503), StorageError, "UNAVAILABLE", True),
    (_client_error("InternalError", 500), StorageError, "UNAVAILABLE", True),
    (_client_error("RequestTimeout", 400), StorageError, "UNAVAILABLE", True),
    (_client_error("Throttling", 400), StorageError, "UNAVAILABLE", True),
    (_client_error("Whatever", 502), StorageError, "UNAVAILABLE", True),
    (ConnectionRefusedError(111, "Connection refused"), NetworkError, "STORAGE_UNREACHABLE",
     True),
    (ConnectionResetError(104, "Connection reset by peer"), StorageError, "UNAVAILABLE", True),
    (TimeoutError("timed out"), StorageError, "UNAVAILABLE", True),
    (OSError(5, "I/O error"), StorageError, "UNAVAILABLE", True),
    (FileNotFoundError(2, "No such file"), InvalidInputError, "NOT_FOUND", False),
    (PermissionError(13, "Permission denied"), PermanentStorageError, "ACCESS_DENIED", False),
    (ValueError("bug"), InternalError, "UNEXPECTED", False),
])
def test_classify_storage_error(exc, cls, subcode, transient) -> None:
    err = classify_storage_error(exc, op="put", url="s3://b/k")
    assert type(err) is cls and err.subcode == subcode
    assert err.transient is transient and is_transient(err) is transient
    assert isinstance(err, ConversionError)


def test_classify_looks_behind_translated_errors() -> None:
    # s3fs turns ClientErrors into OSError/FileNotFoundError with the original as cause
    translated = FileNotFoundError("The specified bucket does not exist")
    translated.__cause__ = _client_error("NoSuchBucket", 404)
    assert classify_storage_error(translated).subcode == "ACCESS_DENIED"
    slow = OSError(16, "Please reduce your request rate")
    slow.__cause__ = _client_error("SlowDown", 503)
    err = classify_storage_error(slow)
    assert type(err) is StorageError and err.transient
    # the newest exception decides, not one that was being handled when it happened
    try:
        try:
            raise _client_error("404", 404)
        except ClientError:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as refused:
                raise EndpointConnectionError(endpoint_url="http://s3") from refused
    except EndpointConnectionError as exc:
        assert classify_storage_error(exc).subcode == "STORAGE_UNREACHABLE"
    try:
        try:
            raise TimeoutError("slow")
        except TimeoutError:
            raise FileNotFoundError(2, "gone") from None
    except FileNotFoundError as exc:
        assert classify_storage_error(exc).subcode == "NOT_FOUND"
    try:
        try:
            raise _client_error("SlowDown", 503)
        except ClientError:
            raise ConnectionResetError(104, "reset") from None
    except ConnectionResetError as exc:
        assert classify_storage_error(exc).subcode == "UNAVAILABLE"
    already = InvalidInputError("x", subcode="BAD_FILENAME")
    assert classify_storage_error(already) is already


# --------------------------------------------------------------------------- memory


def _download_peak(st: ObjectStore, ref: str, dest: Path, chunk: int) -> int:
    st.read_head(ref, 1)  # warm up clients, models and pools outside the measurement
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        st.download(ref, dest, chunk=chunk)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def moto_process():
    """moto in a child process: an in-process server's allocations would be counted."""
    s3 = MotoS3.start_process()
    try:
        yield s3
    finally:
        s3.stop()


def test_download_50mb_keeps_memory_bounded(tmp_path: Path, moto_process) -> None:
    size = 50 * MiB
    src = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with src.open("wb") as fh:
        for _ in range(size // MiB):
            fh.write(block)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()

    file_store = ObjectStore((tmp_path / "store").as_uri())
    file_store.put_file("big.bin", src)
    s3_store = ObjectStore(**moto_process.store_kwargs(f"s3://{moto_process.make_bucket()}"))
    s3_store.put_file("big.bin", src)
    src.unlink()

    for st in (file_store, s3_store):
        dest = tmp_path / "dl" / "big.bin"
        peak = _download_peak(st, "big.bin", dest, chunk=MiB)
        assert dest.stat().st_size == size
        assert peak < 12 * MiB, f"{st}: download peaked at {peak / MiB:.1f} MiB"
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
        dest.unlink()
        pieces = [len(p) for p in st.iter_chunks("big.bin", chunk=MiB)]
        assert sum(pieces) == size and max(pieces) <= MiB and len(pieces) >= size // MiB
        assert st.sha256("big.bin", chunk=MiB) == digest


# --------------------------------------------------------------------------- block


def test_object_storage_block(monkeypatch, tmp_path: Path) -> None:
    from prefect_aws import AwsCredentials

    from blocks.settings import PipelineSettings
    from blocks.storage import ObjectStorage

    assert ObjectStorage.get_block_type_slug() == "cad2gltf-object-storage"
    assert ObjectStorage.get_block_type_name() == "cad2gltf Object Storage"
    for name in ("base_url", "endpoint_url", "region", "aws_credentials"):
        assert ObjectStorage.model_fields[name].description

    secret, token, key_id = "SeCrEt-Value-123", "SeSsIoN-ToKeN-456", "AKIAEXAMPLEKEY9876"
    block = ObjectStorage(
        base_url="s3://results/cad", endpoint_url="http://127.0.0.1:9",
        aws_credentials=AwsCredentials(aws_access_key_id=key_id,
                                       aws_secret_access_key=secret,
                                       aws_session_token=token, region_name="eu-west-1"))
    for text in (repr(block), str(block), f"{block}", repr([block])):
        assert secret not in text and token not in text and key_id not in text
        assert "s3://results/cad" in text
    kwargs = block.store_kwargs()
    assert kwargs == {"base_url": "s3://results/cad", "endpoint_url": "http://127.0.0.1:9",
                      "key": key_id, "secret": secret, "token": token,
                      "region": "eu-west-1"}
    st = ObjectStore(**kwargs)
    assert secret not in repr(st) and token not in repr(st)
    assert st.key_url("a/b.glb") == "s3://results/cad/a/b.glb"

    # embedded default: settings + the standard AWS variables
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "envkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret-xyz")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    settings = PipelineSettings(home=tmp_path, s3_endpoint_url="http://127.0.0.1:1",
                                s3_region="us-east-1")
    default = ObjectStorage.from_settings(settings)
    assert "envsecret-xyz" not in repr(default)
    kw = default.store_kwargs()
    assert kw["base_url"] == (tmp_path / "store").resolve().as_uri()
    assert (kw["key"], kw["secret"], kw["token"]) == ("envkey", "envsecret-xyz", None)
    assert (kw["endpoint_url"], kw["region"]) == ("http://127.0.0.1:1", "us-east-1")
    assert ObjectStore(**kw).protocol == "file"

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    bare = ObjectStorage.from_settings(PipelineSettings(home=tmp_path, storage_url="s3://b/p"))
    assert bare.aws_credentials is None
    assert bare.store_kwargs() == {"base_url": "s3://b/p", "endpoint_url": None, "key": None,
                                   "secret": None, "token": None, "region": None}
