"""Aligning prompt pairs of different token lengths on the final token and on marked substrings."""

from __future__ import annotations

import numpy as np
import pytest

from engine.alignment import Alignment, align_pairs
from engine.errors import AlignmentError
from engine.methods import activation_patching, attribution_patching
from tests.engine.methods.reference import reference_patching


def test_marks_map_to_the_last_or_first_token(tiny):
    al = align_pairs(tiny, ["w1 w2 w3 w4 w5", "w7 w8 w40 w9"], ["w1 w20 w21 w22 w5 w6", "w7 w30 w31 w32 w9"],
                     marks={"subject_last": [("w2 w3", "w20 w21 w22"), ("w8 w40", "w30 w31")],
                            "subject_first": [("w2 w3", "w20 w21 w22"), ("w8 w40", "w30 w31")]})
    assert al.alignment.names == ["subject_last", "subject_first", "final"]
    assert al.alignment.clean == [[2, 1, 4], [2, 1, 3]]
    assert al.alignment.corrupted == [[3, 1, 5], [2, 1, 4]]
    assert al.clean_tokens[1] == [7, 8, 40, 9] and al.corrupted_tokens[0] == [1, 20, 21, 22, 5, 6]


def test_one_token_standing_for_two_is_ambiguous(tiny):
    with pytest.raises(AlignmentError, match="pair 0: ambiguous: .subject_last. and .subject_first."):
        align_pairs(tiny, ["w1 w2 w3", "w7 w8 w9"], ["w1 w20 w21 w3", "w7 w30 w31 w9"],
                    marks={"subject_last": [("w2", "w20 w21"), ("w8", "w30 w31")],
                           "subject_first": [("w2", "w20 w21"), ("w8", "w30 w31")]})


def test_aligned_patching_equals_reference(tiny):
    al = align_pairs(tiny, ["w5 w9 w12 w7 w3", "w8 w1 w2 w7 w3 w10"], ["w5 w20 w21 w22 w7 w3", "w8 w30 w7 w3 w10"],
                     marks={"subject_last": [("w9 w12", "w20 w21 w22"), ("w1 w2", "w30")], "verb": ("w7", "w7")})
    a = al.alignment
    for direction in ("denoise", "noise"):
        fast = activation_patching(tiny, al.clean_tokens, al.corrupted_tokens, [1, 2], [3, 4], alignment=a, direction=direction)
        ref, *_ = reference_patching(tiny, al.clean_tokens, al.corrupted_tokens, [1, 2], [3, 4], direction=direction,
                                     clean_pos=a.clean, corrupted_pos=a.corrupted)
        np.testing.assert_allclose(fast.grid(), ref, atol=1e-4)
        assert fast.labels[1] == ["subject_last", "verb", "final"]
    attr = attribution_patching(tiny, al.clean_tokens, al.corrupted_tokens, [1, 2], [3, 4], alignment=a, positions=["final"])
    assert attr.grid().shape == (3, 1)


@pytest.mark.parametrize("clean,corrupted,marks,message", [
    (["w1 w2 w2 w3"], ["w1 w5 w3"], {"s": ("w2", "w5")}, "pair 0 \\(clean\\), mark 's': marker 'w2' occurs 2 times"),
    (["w1 w2 w3"], ["w1 w5 w3"], {"s": ("w9", "w5")}, "pair 0 \\(clean\\), mark 's': marker 'w9' does not occur"),
    (["w1 w2 w3 w4"], ["w1 w5 w6 w4"], {"a": ("w2", "w5"), "b": ("w2", "w6")}, "ambiguous: 'a' and 'b'"),
    (["w1 w2 w3 w4"], ["w1 w5 w6 w4"], {"a": ("w2", "w6"), "b": ("w3", "w5")}, "different order"),
    (["w1 w2", "w3 w4"], ["w1 w5", "w3 w6"], {"a": [("w2", "w5")]}, "1 \\(clean, corrupted\\) substrings for 2 pairs"),
])
def test_ambiguous_or_missing_marks_say_which_pair_and_why(tiny, clean, corrupted, marks, message):
    with pytest.raises(AlignmentError, match=message):
        align_pairs(tiny, clean, corrupted, marks=marks)


def test_bad_explicit_alignment(tiny):
    with pytest.raises(AlignmentError, match="pair 0: corrupted positions \\['final=7'\\] are outside 0..2"):
        activation_patching(tiny, [[1, 2, 3, 4]], [[1, 5, 4]], 1, 2,
                            alignment=Alignment(names=["final"], clean=[[3]], corrupted=[[7]]))
    with pytest.raises(AlignmentError, match="covers 2 pairs but 1 were given"):
        activation_patching(tiny, [[1, 2, 3, 4]], [[1, 5, 4]], 1, 2,
                            alignment=Alignment(names=["final"], clean=[[3], [3]], corrupted=[[2], [2]]))


@pytest.mark.embedded
def test_embedded_subject_alignment(embedded):
    clean, corrupted = ["The Eiffel Tower is in the city of"], ["The famous old Colosseum is in the city of"]
    al = align_pairs(embedded, clean, corrupted, marks={"subject_last": ("Tower", "Colosseum")})
    assert len(al.clean_tokens[0]) != len(al.corrupted_tokens[0])
    paris, rome = embedded.token_id(" Paris"), embedded.token_id(" Rome")
    fast = activation_patching(embedded, al.clean_tokens, al.corrupted_tokens, paris, rome, alignment=al.alignment, layers=[3, 20])
    ref, *_ = reference_patching(embedded, al.clean_tokens, al.corrupted_tokens, [paris], [rome], layers=[3, 20],
                                 clean_pos=al.alignment.clean, corrupted_pos=al.alignment.corrupted)
    np.testing.assert_allclose(fast.grid(), ref, atol=1e-4)
