"""The stop guard of the training loop (introvae.stopping), with real signals sent to this process."""

import os
import signal

import pytest

from introvae.stopping import StopSignals


def test_first_signal_is_recorded_and_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopSignals() as guard:
        assert guard.requested is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing: the loop is already stopping
        assert guard.requested == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before


def test_second_ctrl_c_stops_at_once():
    with pytest.raises(KeyboardInterrupt):
        with StopSignals() as guard:
            os.kill(os.getpid(), signal.SIGINT)
            assert guard.requested == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second Ctrl-C did not interrupt")


def test_ignored_signals_stay_ignored_and_requests_without_a_signal():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as under nohup
    try:
        with StopSignals() as guard:
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            guard.request()
            guard.request(signal.SIGINT)  # the first request is kept
            assert guard.requested == signal.SIGTERM
        with StopSignals() as guard:  # a new block starts with no request
            assert guard.requested is None
    finally:
        signal.signal(signal.SIGTERM, previous)
