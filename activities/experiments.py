"""Records a customer's arm of a split and answers it, with the winner rule applied.

Run as a local activity at the first visit of a split: its answer is recorded in history, so
a replay takes the same arm without reading the database, and a winner decided later reaches
only customers assigned after it. A retried attempt finds the assignment recorded and
answers the arm recorded then, so the workflow and the table never disagree.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity

from reports.experiments import decide_winner
from settings import Settings
from storage.database import session_for
from storage.models import ExperimentAssignment
from workflows.interface import ArmAssigned, ArmRequest


class ExperimentRecorder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="record_assignment")
    def record_assignment(self, request: ArmRequest) -> ArmAssigned:
        with session_for(self.settings.database_url) as session:
            recorded = _recorded(session, request)
            if recorded is not None:
                return ArmAssigned(arm=recorded.arm, by_winner=recorded.by_winner)
            arm, by_winner = request.hashed_arm, False
            # The holdout stays the holdout: the control keeps being measured after a decision.
            if request.winner is not None and arm is not None:
                winner = decide_winner(
                    session,
                    request.journey_id,
                    request.split,
                    request.arms,
                    request.winner,
                    request.window,
                    request.at,
                    self.settings.global_holdout_percent,
                )
                if winner is not None and winner in request.arms:
                    arm, by_winner = winner, winner != request.hashed_arm
            session.add(
                ExperimentAssignment(
                    journey_id=request.journey_id,
                    split=request.split,
                    customer_id=request.customer_id,
                    instance=request.instance,
                    arm=arm,
                    by_winner=by_winner,
                    assigned_at=request.at,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # an attempt that timed out recorded it meanwhile: its arm holds
                recorded = _recorded(session, request)
                assert recorded is not None
                return ArmAssigned(arm=recorded.arm, by_winner=recorded.by_winner)
            return ArmAssigned(arm=arm, by_winner=by_winner)


def _recorded(session: Session, request: ArmRequest) -> ExperimentAssignment | None:
    return session.exec(
        select(ExperimentAssignment).where(
            ExperimentAssignment.journey_id == request.journey_id,
            ExperimentAssignment.split == request.split,
            ExperimentAssignment.customer_id == request.customer_id,
            ExperimentAssignment.instance == request.instance,
        )
    ).first()
