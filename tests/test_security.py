"""Security (issue 6, docs/reliability.md): no unsafe deserialisation or code evaluation in
the package, secrets kept out of logs, encryption at rest, cassettes that import nothing."""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import logging
import os
import re
import sys
from collections import OrderedDict
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest
from aspectlib import weave

import atlas_eda
from atlas_eda import LoggingAspect, StoreOpenError, TemporalStore
from atlas_eda.aspects import DEFAULT_SECRET_NAMES
from atlas_eda.store import CIPHER_ENV_VAR, create_cipher_key
from atlas_eda.testing import Cassette, CassetteWarning

PACKAGE = Path(atlas_eda.__file__).resolve().parent

# -- no pickle, no eval ------------------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def package_sources() -> list[Path]:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 15
    return sources


def test_the_package_never_imports_pickle_marshal_or_shelve() -> None:
    found = []
    for path in package_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{path.name}:{node.lineno} imports {name}")
    assert found == []


# The allowed imports by name: the command line imports the module its user names in
# an option (``atlas-eda replay --system module:factory``), as ``python -m`` would; the
# lazy packages (``_lazy.py``) import their own modules, named in their own source and
# relative to the package (make_lazy refuses any other), the first time a name is used.
# Nothing read from a file (a cassette, a store) ever decides what is imported.
ALLOWED_CALLS = {("apps.py", "import_module"), ("_lazy.py", "import_module")}


def test_the_package_never_evaluates_code_or_imports_by_name() -> None:
    found = []
    for path in package_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                # A bare eval/exec/compile is the builtin; re.compile is fine.
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                    found.append(f"{path.name}:{node.lineno} calls {func.id}")
                name = getattr(func, "attr", None)
                by_name = name in FORBIDDEN_CALLS - {"compile"} or name == "import_module"
                if by_name and (path.name, name) not in ALLOWED_CALLS:
                    found.append(f"{path.name}:{node.lineno} calls {name}")
                if name == "load" and "yaml" in ast.unparse(func):
                    found.append(f"{path.name}:{node.lineno} calls yaml.load")
    assert found == []


def test_the_scan_would_notice(tmp_path: Path) -> None:
    tree = ast.parse("import pickle\nfrom marshal import loads\neval('1')\n")
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert len(imports) == 2
    assert [c.func.id for c in calls] == ["eval"]  # type: ignore[attr-defined]


# -- secrets stay out of logs ------------------------------------------------------------


class Account:
    def login(self, user: str, password: str, *, remember: bool = False) -> str:
        return f"welcome {user}"

    def call_api(self, url: str, api_key: str, headers: Any = None) -> int:
        return 200

    def store(self, name: str, payload: Any) -> None:
        if payload == "boom":
            raise ValueError("refused: " + "z" * 5000)


def logged_lines(aspect: LoggingAspect, call: Any) -> list[str]:
    lines: list[str] = []
    aspect.logger = lines.append
    with suppress(ValueError):
        call()
    return lines


@pytest.mark.parametrize(
    ("call", "enter"),
    [
        (lambda a: a.login("bob", "hunter2"), "Account.login('bob', ***)"),
        (
            lambda a: a.login("bob", password="hunter2", remember=True),
            "Account.login('bob', password=***, remember=True)",
        ),
        (lambda a: a.call_api("https://x", "hunter2"), "Account.call_api('https://x', ***)"),
        (
            lambda a: a.call_api("https://x", api_key="hunter2"),
            "Account.call_api('https://x', api_key=***)",
        ),
        (
            lambda a: a.call_api("https://x", "k", headers={"Authorization": "Bearer hunter2"}),
            "Account.call_api('https://x', ***, headers={'Authorization': ***})",
        ),
        (
            lambda a: a.call_api("https://x", "k", headers=OrderedDict(X_Auth_Token="hunter2")),
            "Account.call_api('https://x', ***, headers={'X_Auth_Token': ***})",
        ),
        (
            lambda a: a.store("n", {"db": {"Password": "hunter2"}}),
            "Account.store('n', {'db': {'Password': ***}})",
        ),
        (
            lambda a: a.store("n", [{"client_secret": "hunter2"}]),
            "Account.store('n', [{'client_secret': ***}])",
        ),
    ],
    ids=[
        "positional",
        "keyword",
        "api_key-positional",
        "api_key-keyword",
        "dict-key",
        "other-mapping",
        "nested",
        "in-a-list",
    ],
)
def test_logging_aspect_never_logs_secret_arguments(call: Any, enter: str) -> None:
    account = Account()
    aspect = LoggingAspect(lambda line: None)
    for method in ("login", "call_api", "store"):
        weave(getattr(account, method), aspect)

    lines = logged_lines(aspect, lambda: call(account))

    # Every other argument is logged as it is; the secret ones (by name, at any depth, and
    # the api_key's positional place) as *** only.
    assert len(lines) == 2
    assert lines[0] == f"[1] ENTER {enter}"
    method = re.escape(enter.partition("(")[0])
    assert re.fullmatch(rf"\[1\] EXIT {method} in \d+\.\d{{4}}s", lines[1])
    assert not any("hunter2" in line for line in lines)


def test_the_secret_names_are_configurable() -> None:
    account = Account()
    aspect = LoggingAspect(lambda line: None, secret_names=("user",))
    weave(account.login, aspect)

    [enter, _] = logged_lines(aspect, lambda: account.login("bob", "hunter2"))

    assert "bob" not in enter
    assert "hunter2" in enter  # no longer on the list
    assert {"password", "token", "secret", "api_key", "authorization"} <= set(DEFAULT_SECRET_NAMES)


def test_no_secret_names_logs_everything() -> None:
    account = Account()
    aspect = LoggingAspect(lambda line: None, secret_names=())
    weave(account.login, aspect)

    [enter, _] = logged_lines(aspect, lambda: account.login("bob", "hunter2"))

    assert "ENTER Account.login('bob', 'hunter2')" in enter


def test_long_argument_reprs_and_error_messages_are_cut_to_max_repr() -> None:
    account = Account()
    aspect = LoggingAspect(lambda line: None, max_repr=30)
    weave(account.store, aspect)

    lines = logged_lines(aspect, lambda: account.store("y" * 10_000, ["q" * 1000] * 100))
    lines += logged_lines(aspect, lambda: account.store("n", "boom"))

    enter = lines[0]
    assert len(enter) < 120
    error = lines[-1]
    assert "ValueError: refused: zzz" in error
    assert len(error) < 150


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"secret_names": "password"},
            TypeError,
            "secret_names must be a collection of names, not one str: use ('password',) for "
            "a single name.",
        ),
        (
            {"secret_names": ["ok", ""]},
            TypeError,
            "secret_names must hold non-empty strs, got ('ok', '').",
        ),
        ({"max_repr": 2}, ValueError, "max_repr must be an int of at least 8, got 2."),
    ],
)
def test_invalid_logging_options_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as refused:
        LoggingAspect(**kwargs)
    assert type(refused.value) is error
    assert str(refused.value) == message


def test_a_hostile_repr_or_mapping_does_not_break_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Hostile(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    account = Account()
    weave(account.store, LoggingAspect())
    with caplog.at_level(logging.INFO, logger="atlas_eda.aspects"):
        account.store("n", Hostile())
    assert "ENTER Account.store('n', <Hostile>)" in caplog.records[0].getMessage()


# -- encryption at rest ------------------------------------------------------------------

SECRET_CONTENT = "Quarterly numbers: the merger with Initech closes on Friday"
SECRET_TITLE = "Project Nightingale"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.absolute()}"


def every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


def write_secret_document(url: str, cipher_key: str | None) -> str:
    store = TemporalStore(url=url, cipher_key=cipher_key, snapshot_interval=2)
    doc_id = store.create_document(SECRET_TITLE, SECRET_CONTENT, "alice@example.com")
    store.update_document(doc_id, content=SECRET_CONTENT + " (v2)", editor="bob")
    store.update_document(doc_id, content=SECRET_CONTENT + " (v3)", editor="carol")
    # Checked while the store is open too: the -wal file holds the newest pages, with the
    # plaintext in them exactly when the store is not encrypted (no key given, none in the
    # environment).
    encrypted = cipher_key is not None or CIPHER_ENV_VAR in os.environ
    plaintext = SECRET_CONTENT.encode() in every_byte(Path(url[len("sqlite:///") :]).parent)
    assert plaintext is not encrypted
    store.close()
    return doc_id


def test_an_encrypted_store_holds_no_plaintext_and_reads_back(tmp_path: Path) -> None:
    key = create_cipher_key()
    url = sqlite_url(tmp_path / "secret.db")

    doc_id = write_secret_document(url, key)

    raw = every_byte(tmp_path)
    assert raw  # the file exists and has content
    for plaintext in (SECRET_CONTENT, SECRET_TITLE, "alice@example.com", "carol"):
        assert plaintext.encode() not in raw
        assert plaintext.encode("utf-16-le") not in raw
    with closing(TemporalStore(url=url, cipher_key=key)) as store:
        assert store.get_document(doc_id, version=1).content == SECRET_CONTENT  # type: ignore[union-attr]
        latest = store.get_document(doc_id)
        assert latest is not None
        assert (latest.version, latest.title, latest.last_editor) == (3, SECRET_TITLE, "carol")
        assert [e.version for e in store.timeline()] == [1, 2, 3]


def test_the_same_scan_finds_the_plaintext_of_an_unencrypted_store(tmp_path: Path) -> None:
    write_secret_document(sqlite_url(tmp_path / "plain.db"), None)
    assert SECRET_CONTENT.encode() in every_byte(tmp_path)


def test_an_encrypted_store_is_refused_without_its_key_or_with_another(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "secret.db")
    write_secret_document(url, create_cipher_key())
    before = every_byte(tmp_path)

    with pytest.raises(StoreOpenError, match="no cipher key was given"):
        TemporalStore(url=url)
    with pytest.raises(StoreOpenError, match="different key"):
        TemporalStore(url=url, cipher_key=create_cipher_key())

    assert every_byte(tmp_path) == before


def test_a_plain_store_opened_with_a_key_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "plain.db")
    write_secret_document(url, None)

    with pytest.raises(StoreOpenError, match="a cipher key was given"):
        TemporalStore(url=url, cipher_key=create_cipher_key())


def test_the_key_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = create_cipher_key()
    monkeypatch.setenv(CIPHER_ENV_VAR, key)
    url = sqlite_url(tmp_path / "env.db")
    doc_id = write_secret_document(url, None)  # the variable supplies the key

    assert SECRET_CONTENT.encode() not in every_byte(tmp_path)
    with closing(TemporalStore(url=url, cipher_key=key)) as store:
        assert store.get_document(doc_id).title == SECRET_TITLE  # type: ignore[union-attr]
    monkeypatch.delenv(CIPHER_ENV_VAR)
    with pytest.raises(StoreOpenError):
        TemporalStore(url=url)


def test_eventsourcings_own_cipher_variables_cannot_change_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIPHER_KEY", create_cipher_key())
    monkeypatch.setenv("CIPHER_TOPIC", "eventsourcing.cipher:AESCipher")
    url = sqlite_url(tmp_path / "plain.db")
    write_secret_document(url, None)
    assert SECRET_CONTENT.encode() in every_byte(tmp_path)


def test_a_memory_store_can_be_encrypted_too() -> None:
    store = TemporalStore(url="memory://", cipher_key=create_cipher_key())
    doc_id = store.create_document("t", SECRET_CONTENT, "a")
    [stored] = store.recorder.select_events(store.get_document(doc_id).id)  # type: ignore[union-attr]
    assert SECRET_CONTENT.encode() not in stored.state
    assert store.get_document(doc_id).content == SECRET_CONTENT  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["not base64!", "c2hvcnQ=", "", 12345])
def test_an_invalid_key_is_refused_before_anything_is_created(tmp_path: Path, key: Any) -> None:
    with pytest.raises(StoreOpenError, match="cipher"):
        TemporalStore(url=sqlite_url(tmp_path / "x.db"), cipher_key=key)
    assert list(tmp_path.iterdir()) == []


def test_a_new_key_is_a_random_256_bit_key() -> None:
    import base64

    keys = {create_cipher_key() for _ in range(5)}
    assert len(keys) == 5
    assert {len(base64.b64decode(k)) for k in keys} == {32}


# -- cassettes import nothing ------------------------------------------------------------


def cassette_line(event_type: str, **extra: Any) -> str:
    line = {
        "specversion": "1.0",
        "id": "e1",
        "source": "test",
        "type": event_type,
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"x": 1},
        **extra,
    }
    return json.dumps(line)


def test_loading_a_cassette_never_imports_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [
        "evil_module_for_atlas_tests.Kind.RUN",
        "os.system.X",
        "subprocess.Popen.RUN",
        "importlib.import_module.X",
        "builtins.eval.X",
        "EventType.DOCUMENT_CREATED",
    ]
    lines = [cassette_line(name) for name in names]
    lines.append(
        cassette_line(
            "EventType.ERROR",
            atlaseffects=json.dumps([{"type": "evil_module_for_atlas_tests.Effect.X"}]),
        )
    )
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")

    imported: list[str] = []
    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def spy_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in sys.modules:
            imported.append(name)
        return real_import(name, *args, **kwargs)

    def spy_import_module(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import_module(name, package)

    before = set(sys.modules)
    monkeypatch.setattr(builtins, "__import__", spy_import)
    monkeypatch.setattr(importlib, "import_module", spy_import_module)
    with pytest.warns(CassetteWarning):
        cassette = Cassette.load(path, strict=False)
    monkeypatch.undo()

    assert [e.event.type.name for e in cassette] == ["DOCUMENT_CREATED"]
    assert imported == []
    assert set(sys.modules) - before == set()
    assert "evil_module_for_atlas_tests" not in sys.modules


def test_the_command_line_reads_an_encrypted_store_with_the_key_from_the_environment(
    tmp_path: Path,
) -> None:
    from conftest import run_cli

    key = create_cipher_key()
    url = sqlite_url(tmp_path / "secret.db")
    write_secret_document(url, key)

    shown = run_cli("log", "--store", url, cwd=tmp_path, env={CIPHER_ENV_VAR: key})
    refused = run_cli("log", "--store", url, cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert SECRET_TITLE in shown.stdout
    assert refused.returncode == 2
    assert CIPHER_ENV_VAR in refused.stderr
    assert "Traceback" not in refused.stderr
    assert SECRET_CONTENT not in refused.stdout + refused.stderr
