"""The conversation's rules without Qt or a model: the turn queue, Stop, the history, barge-in."""

import queue
import threading

import pytest

from app.conversation import (LOADING, NO_MODEL, READY, WAITING_FOR_ANSWER, WAITING_FOR_MODEL, Conversation,
                              Turn)


def make(**options) -> tuple[Conversation, list[Turn]]:
    """A Conversation whose started turns are recorded in order."""
    started: list[Turn] = []
    return Conversation(started.append, **options), started


def typed(conversation: Conversation, text: str) -> Turn:
    turn = conversation.new_turn(text=text, source="typed")
    assert conversation.submit(turn)
    return turn


# -- the queue ---------------------------------------------------------------------------------------


def test_turns_get_increasing_ids():
    conversation, _ = make()
    ids = [conversation.new_turn().id for _ in range(3)]
    assert ids == [1, 2, 3]


def test_one_turn_in_the_model_at_a_time_and_the_rest_wait_in_order():
    conversation, started = make()
    first, second, third = (typed(conversation, t) for t in ("a", "b", "c"))
    assert started == [first] and conversation.current is first and conversation.busy
    assert conversation.waiting == (second, third)
    assert conversation.finish(first.id, "A") is first
    assert started == [first, second] and conversation.waiting == (third,)
    conversation.finish(second.id, "B")
    conversation.finish(third.id, "C")
    assert started == [first, second, third]
    assert conversation.current is None and not conversation.busy and conversation.waiting == ()


def test_finishing_a_turn_that_is_not_in_the_model_changes_nothing():
    conversation, started = make()
    first, second = typed(conversation, "a"), typed(conversation, "b")
    assert conversation.finish(second.id, "too early") is None
    assert conversation.finish(999, "unknown") is None
    assert conversation.current is first and conversation.waiting == (second,) and started == [first]


def test_stop_stops_the_running_turn_and_drops_the_waiting_ones():
    conversation, started = make()
    first, second, third = (typed(conversation, t) for t in ("a", "b", "c"))
    dropped = conversation.stop()
    assert dropped == [second, third]
    assert first.stop.is_set() and not second.stop.is_set()
    assert conversation.current is first  # still in the model until it reports its (stopped) end
    conversation.finish(first.id, "partial", stopped=True)
    assert started == [first] and conversation.current is None
    fourth = typed(conversation, "d")  # the next turn after Stop goes in at once
    assert started == [first, fourth] and not fourth.stop.is_set()


def test_stop_with_nothing_running_drops_nothing():
    conversation, _ = make()
    assert conversation.stop() == []


# -- the model's state --------------------------------------------------------------------------------


def test_without_a_model_turns_are_refused():
    conversation, started = make(model_state=NO_MODEL)
    assert not conversation.submit(conversation.new_turn(text="hello"))
    assert started == [] and conversation.waiting == ()


def test_turns_wait_for_the_model_to_load_then_go_one_at_a_time():
    conversation, started = make(model_state=LOADING)
    first, second = typed(conversation, "a"), typed(conversation, "b")
    assert started == [] and conversation.waiting == (first, second)
    assert conversation.waiting_note() == WAITING_FOR_MODEL
    assert conversation.set_model_state(READY) == []
    assert started == [first] and conversation.waiting == (second,)
    assert conversation.waiting_note() == WAITING_FOR_ANSWER


def test_losing_the_model_drops_the_waiting_turns():
    conversation, started = make(model_state=LOADING)
    first, second = typed(conversation, "a"), typed(conversation, "b")
    assert conversation.set_model_state(NO_MODEL) == [first, second]
    assert conversation.waiting == () and started == []


def test_an_unknown_model_state_is_refused():
    conversation, _ = make()
    with pytest.raises(ValueError, match="loaded"):
        conversation.set_model_state("loaded")


# -- the history ----------------------------------------------------------------------------------------


def exchange(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_history_is_trimmed_to_the_last_context_turns():
    conversation, started = make(context_turns=2)
    for question in ("q1", "q2", "q3"):
        turn = typed(conversation, question)
        conversation.finish(turn.id, question.replace("q", "a"))
    last = typed(conversation, "q4")
    assert last.history == tuple(exchange("q2", "a2") + exchange("q3", "a3"))
    assert started[0].history == () and started[1].history == tuple(exchange("q1", "a1"))
    conversation.context_turns = 1  # a settings change applies to the next turn
    assert conversation.context() == tuple(exchange("q3", "a3"))


def test_no_context_turns_sends_no_history():
    conversation, _ = make(context_turns=0)
    turn = typed(conversation, "q1")
    conversation.finish(turn.id, "a1")
    assert typed(conversation, "q2").history == ()


def test_only_complete_typed_exchanges_enter_the_history():
    conversation, _ = make(context_turns=5)
    spoken = conversation.new_turn(audio="question.wav", source="file")
    conversation.submit(spoken)
    conversation.finish(spoken.id, "an answer to audio")
    stopped = typed(conversation, "stopped")
    conversation.finish(stopped.id, "half an ans", stopped=True)
    failed = typed(conversation, "failed")
    conversation.finish(failed.id)  # no answer: the model failed
    kept = typed(conversation, "kept")
    conversation.finish(kept.id, "yes")
    assert conversation.context() == tuple(exchange("kept", "yes"))
    conversation.clear_history()
    assert conversation.context() == ()


# -- barge-in -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("barge_in, playing, muted, interrupts", [
    (False, False, False, False),
    (False, True, True, False),  # the assistant speaks: the microphone does not hear it
    (True, False, False, False),
    (True, True, False, True),  # the user talks over the assistant: it falls silent
])
def test_barge_in_decides_muting_and_interrupting(barge_in, playing, muted, interrupts):
    conversation, _ = make(barge_in=barge_in)
    assert conversation.mutes_microphone(playing) is muted
    assert conversation.speech_interrupts(playing) is interrupts


# -- threads (aura listen submits from the Listener thread) --------------------------------------------


def test_turns_submitted_from_another_thread_are_answered_once_each_in_order():
    startable: queue.Queue[Turn] = queue.Queue()
    conversation = Conversation(startable.put)
    count = 200

    def producer():
        for i in range(count):
            conversation.submit(conversation.new_turn(text=str(i), source="microphone"))

    thread = threading.Thread(target=producer)
    thread.start()
    answered = []
    for _ in range(count):
        turn = startable.get(timeout=30)
        assert conversation.current is turn  # never two in the model
        answered.append(turn.text)
        conversation.finish(turn.id, "ok")
    thread.join(30)
    assert answered == [str(i) for i in range(count)]
    assert startable.empty() and conversation.current is None
