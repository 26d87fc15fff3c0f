"""Per-process preparation of Prefect's clients (tasks.runtime)."""

from __future__ import annotations

import ssl


def test_prefect_clients_of_a_process_share_one_tls_context(monkeypatch):
    """Prefect builds an SSLContext (parsing the CA bundle) per client; once shared, many
    clients build one."""
    import prefect.client.orchestration as orchestration
    from prefect.client.orchestration import PrefectClient

    from tasks.runtime import share_client_tls_contexts

    built: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(orchestration, "ssl", ssl)  # restored after the test
    monkeypatch.setattr(ssl, "create_default_context", counting)
    PrefectClient("https://prefect.invalid/api")
    PrefectClient("https://prefect.invalid/api")
    assert len(built) == 2  # stock: one context per client

    share_client_tls_contexts()
    share_client_tls_contexts()  # idempotent: not wrapped twice
    assert orchestration.ssl._real is ssl  # type: ignore[attr-defined]
    clients = [PrefectClient("https://prefect.invalid/api") for _ in range(5)]
    assert len(built) == 3
    contexts = {id(c._client._transport._pool._ssl_context) for c in clients}
    assert contexts == {id(built[-1])}
    assert built[-1].verify_mode == ssl.CERT_REQUIRED
