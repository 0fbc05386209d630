"""Connection limits with the Python client (docs/reliability.md section 4,
docs/decisions.md D26): kbusd counts a uid's connections from accept and
refuses one over --max-ksocks-per-user by answering EMFILE at once and
closing it, perhaps before the client's HELLO went out; the client reports
EMFILE from the open either way (KBUS-SPEC.md section 4.1: open fails)."""

import errno

import pytest

from kbus import Ksock


@pytest.mark.kbusd_args('--max-ksocks-per-user', '2')
def test_open_over_the_per_user_limit_is_emfile(kbusd):
    held = [Ksock(0), Ksock(1)]
    for _ in range(50):  # whichever comes first, the refusal or our HELLO
        with pytest.raises(OSError) as info:
            Ksock(0)
        assert info.value.errno == errno.EMFILE
    # The Ksocks admitted are untouched.
    assert held[0].ksock_id() == 1
    assert held[1].ksock_id() == 1
    for k in held:
        k.close()
