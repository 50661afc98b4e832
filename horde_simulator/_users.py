"""Kudos transfers between users (``POST v2/kudos/transfer``), with the server's rcs and order."""

from __future__ import annotations

from horde_simulator._errors import bad_request
from horde_simulator._state import State
from horde_simulator.config import SimUser


def transfer_kudos(
    state: State, source: SimUser, username: str, amount: int, idempotency_key: str | None
) -> float:
    """``POST /v2/kudos/transfer`` after the key check, with the server's rcs and order."""
    with state.lock:
        dest = state.user_by_username(username)
        if dest is None:
            raise bad_request("Invalid target username.", "InvalidTargetUsername")
        if dest.is_anon:
            raise bad_request(
                "Tried to burn kudos via sending to Anonymous. Assuming PEBKAC and aborting.",
                "KudosTransferToAnon",
            )
        if dest is source:
            raise bad_request("Cannot send kudos to yourself, ya monkey!", "KudosTransferToSelf")
        now = state.now()
        reverse = state.recent_transfers.get((dest.id, source.id))
        if reverse is not None and now - reverse < 60:
            raise bad_request(
                "This user transferred kudos to you very recently. Please wait at least 1 minute.",
                "TooFastKudosTransfers",
            )
        _check_accounts(source, dest)
        if amount < 0:
            raise bad_request("Nice try...", "NegativeKudosTransfer")
        if amount == 0:
            raise bad_request("Transfer amount must be positive.", "InvalidKudosTransferAmount")
        if idempotency_key is not None:
            prior = state.idempotency.get((source.id, idempotency_key))
            if prior is not None:
                if prior != (dest.id, amount):
                    raise bad_request(
                        "Idempotency key was already used with different transfer parameters.",
                        "IdempotencyKeyConflict",
                    )
                return float(amount)
        if amount > source.kudos:
            raise bad_request("Not enough kudos.", "KudosTransferNotEnough")
        source.kudos = round(source.kudos - amount, 2)
        dest.kudos = round(dest.kudos + amount, 2)
        state.transfer_log.append((source.id, dest.id, amount))
        state.recent_transfers[(source.id, dest.id)] = now
        if idempotency_key is not None:
            state.idempotency[(source.id, idempotency_key)] = (dest.id, amount)
        return float(amount)


def _check_accounts(source: SimUser, dest: SimUser) -> None:
    if source.flagged:
        raise bad_request(
            "The target account has been flagged for suspicious activity "
            "and tranferring kudos to them is blocked.",
            "SourceAccountFlagged",
        )
    if source.education:
        raise bad_request("Education accounts cannot transfer kudos away", "EducationCannotSendKudos")
    if dest.flagged:
        raise bad_request(
            "Your account has been flagged for suspicious activity. Please contact the mods.",
            "TargetAccountFlagged",
        )
    if dest.deleted:
        raise bad_request(
            "This destination account has been scheduled for deletion and is disabled", "DeletedUser"
        )
    if source.deleted:
        raise bad_request(
            "This source account has been scheduled for deletion and is disabled", "DeletedUser"
        )
