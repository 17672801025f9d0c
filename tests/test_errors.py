"""bsmamba2_plugin/errors.py: the kinds of UserError are also the standard types."""

from __future__ import annotations

import pytest

from bsmamba2_plugin.errors import (UserError, UserFileExistsError, UserFileNotFoundError,
                                    UserKeyError, UserRuntimeError, UserTypeError,
                                    UserValueError)


@pytest.mark.parametrize("kind, standard", [
    (UserValueError, ValueError), (UserKeyError, KeyError), (UserTypeError, TypeError),
    (UserRuntimeError, RuntimeError), (UserFileNotFoundError, FileNotFoundError),
    (UserFileExistsError, FileExistsError)])
def test_a_user_error_is_caught_as_its_standard_type_and_reads_as_its_message(
        kind: type[UserError], standard: type[Exception]) -> None:
    message = "model.dimm: unknown key. Did you mean 'dim'? Fix: rename it."
    with pytest.raises(standard) as caught:
        raise kind(message)
    assert isinstance(caught.value, UserError)
    assert str(caught.value) == message  # a plain KeyError would add quotes
