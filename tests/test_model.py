"""The plain-data records keep the dataclass rules with one shared repr, equality, hash and
freezing (model.Record)."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError, asdict, replace

import pytest

from releaser.model import Event, Host, SshOptions


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
