"""The plain-data records keep the dataclass rules with one shared repr, equality, hash and
freezing (model.Record)."""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil
from dataclasses import KW_ONLY, MISSING, FrozenInstanceError, asdict, field, fields, make_dataclass, replace

import pytest

import releaser
from releaser.model import Event, Host, SshOptions
from releaser.record import Record


def test_records_are_equal_by_class_and_fields():
    assert Host("web-1", "10.0.0.1", "/srv/shop") == Host("web-1", "10.0.0.1", "/srv/shop")
    assert Host("web-1", "10.0.0.1", "/srv/shop") != Host("web-1", "10.0.0.2", "/srv/shop")
    assert Host("web-1", "10.0.0.1", "/srv/shop") != ("web-1", "10.0.0.1")
    assert Event("stage.started", "started") == Event("stage.started", "started")


def test_frozen_records_hash_by_value_and_mutable_ones_do_not_hash():
    assert len({SshOptions(user="deploy"), SshOptions(user="deploy"), SshOptions(user="root")}) == 2
    with pytest.raises(TypeError, match="unhashable type: 'Event'"):
        hash(Event("stage.started", "started"))


def test_a_frozen_record_takes_its_fields_once():
    host = Host("web-1", "10.0.0.1", "/srv/shop")
    with pytest.raises(FrozenInstanceError):
        host.address = "10.0.0.9"
    with pytest.raises(FrozenInstanceError):
        host.typo = 1
    with pytest.raises(FrozenInstanceError):
        del host.name
    assert host.address == "10.0.0.1"


def test_a_mutable_record_changes():
    event = Event("stage.started", "started")
    event.kind = "stage.passed"
    event.note = "an attribute of its own"
    assert (event.kind, event.note) == ("stage.passed", "an attribute of its own")


def test_records_work_with_the_dataclass_functions_copy_and_pickle():
    host = Host("web-1", "10.0.0.1", "/srv/shop", ssh=SshOptions(user="deploy"))
    moved = replace(host, address="10.0.0.2")
    assert (moved.address, moved.ssh.user) == ("10.0.0.2", "deploy")
    assert asdict(host)["ssh"]["user"] == "deploy"
    assert copy.deepcopy(host) == host
    assert pickle.loads(pickle.dumps(host)) == host  # noqa: S301 - our own bytes
    assert repr(host).startswith("Host(name='web-1', address='10.0.0.1', root='/srv/shop', ")


def test_a_record_is_built_as_a_dataclass_would_be():
    assert Event("stage.started", "started", environment="prod").environment == "prod"
    first, second = Event("a", "b"), Event("a", "b")
    assert first.data == {} and first.data is not second.data  # a fresh default from its factory
    with pytest.raises(TypeError, match="missing required argument: 'message'"):
        Event("stage.started")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Event("a", "b", colour="red")
    with pytest.raises(TypeError, match="multiple values for argument 'kind'"):
        Event("a", "b", kind="c")
    with pytest.raises(TypeError, match="takes 9 arguments but 10 were given"):
        Event(*"abcdefghij")


def _every_record() -> list[type[Record]]:
    """Every Record subclass in releaser, once every module is imported."""
    for module in pkgutil.walk_packages(releaser.__path__, "releaser."):
        if not module.name.endswith(".__main__"):  # runs a command when imported
            importlib.import_module(module.name)
    found: list[type[Record]] = []
    waiting = [Record]
    while waiting:
        for subclass in waiting.pop().__subclasses__():
            if subclass.__module__.startswith("releaser.") and subclass not in found:
                found.append(subclass)
            waiting.append(subclass)
    return found


def _twin(record: type[Record]) -> type:
    """The dataclass `record` stands for: its fields, defaults and frozenness."""
    specs = []
    for f in fields(record):
        given = {"default": f.default} if f.default is not MISSING else {}
        if f.default_factory is not MISSING:
            given["default_factory"] = f.default_factory
        specs.append((f.name, f.type, field(repr=f.repr, compare=f.compare, **given)))
    twin = make_dataclass(record.__name__, specs, frozen=record._frozen)
    twin.__qualname__ = record.__qualname__
    return twin


RECORDS = _every_record()


def test_the_walk_finds_the_records():
    assert {Host, Event, SshOptions} <= set(RECORDS) and len(RECORDS) > 40


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.__module__}.{r.__qualname__}")
def test_every_record_behaves_as_its_dataclass_twin(record):
    twin = _twin(record)
    assert [(f.name, f.default, f.default_factory, f.repr, f.compare) for f in fields(record)] == [
        (f.name, f.default, f.default_factory, f.repr, f.compare) for f in fields(twin)
    ]
    parameters = list(inspect.signature(twin).parameters.values())
    assert [(p.name, p.kind) for p in parameters] == [
        (name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name, _, _ in record._parameters
    ]
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty]
    values = {p.name: f"{p.name}-value" for p in parameters}

    # built from the required arguments alone, by position and by keyword, and with every argument
    for args, kwargs in (([values[n] for n in required], {}), ([], {n: values[n] for n in required}), ([], values)):
        assert repr(record(*args, **kwargs)) == repr(twin(*args, **kwargs))
        assert _state(record(*args, **kwargs)) == _state(twin(*args, **kwargs))
    if required:
        with pytest.raises(TypeError):
            twin(*[values[n] for n in required[:-1]])
        with pytest.raises(TypeError, match=f"missing required argument: '{required[-1]}'"):
            record(*[values[n] for n in required[:-1]])
    with pytest.raises(TypeError):
        twin(*values.values(), "one too many")
    with pytest.raises(TypeError, match="arguments but"):
        record(*values.values(), "one too many")

    # equality by class and compared fields; a hash only when frozen
    mine, theirs = record(**values), twin(**values)
    assert mine == record(**values) and (twin(**values) == theirs)
    assert mine != theirs and theirs != mine
    for f in fields(twin):
        changed = {**values, f.name: "changed"}
        assert (mine == record(**changed)) == (theirs == twin(**changed)), f.name
    if twin.__hash__ is None:
        for instance in (mine, theirs):
            with pytest.raises(TypeError, match="unhashable"):
                hash(instance)
    else:
        assert hash(mine) == hash(theirs) == hash(record(**values))
        for instance in (mine, theirs):
            with pytest.raises(FrozenInstanceError):
                instance.added = "refused"


def _state(instance: object) -> dict:
    return {f.name: getattr(instance, f.name) for f in fields(instance)}


@pytest.mark.parametrize(
    "body, feature",
    [
        ("def __post_init__(self):\n        pass", "__post_init__"),
        ("b: int = field(init=False, default=1)", r"field\(init=False\) \(b\)"),
        ("_: KW_ONLY\n    b: int = 1", "keyword-only fields"),
        ("b: int = field(default=1, kw_only=True)", "keyword-only fields"),
        ("b: int = field(default=1, hash=False)", r"field\(hash=...\)"),
    ],
)
def test_a_record_refuses_what_it_does_not_implement(body, feature):
    source = f"class Odd(Record):\n    a: int = 0\n    {body}\n"
    with pytest.raises(TypeError, match=rf"^Odd: a Record does not support {feature}"):
        exec(source, {"__name__": __name__, "Record": Record, "field": field, "KW_ONLY": KW_ONLY})  # noqa: S102 - a fixed class body


def test_a_record_hierarchy_is_frozen_throughout_or_not_at_all():
    class Frozen(Record, frozen=True):
        a: int = 0

    class Mutable(Record):
        a: int = 0

    with pytest.raises(TypeError, match=r"Thawed: a Record does not support a mutable subclass of a frozen record"):

        class Thawed(Frozen):
            pass

    with pytest.raises(TypeError, match=r"Chilled: a Record does not support frozen=True on a mutable"):

        class Chilled(Mutable, frozen=True):
            pass
