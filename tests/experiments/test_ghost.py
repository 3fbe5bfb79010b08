import pytest

from bnkeras.experiments import ghost

SETTINGS = {"small_batch": 125, "large_batch": 1000, "epochs": 20}


def test_regime_adaptation_makes_as_many_updates_as_the_small_batch():
    small = ghost.regime_steps(4000, SETTINGS, "small", "epochs")
    large = ghost.regime_steps(4000, SETTINGS, "large", "epochs")
    adapted = ghost.regime_steps(4000, SETTINGS, "large", "updates")
    assert (small, large, adapted) == (640, 80, 640)
    # The old definition (4x the epochs) gave the large batch 320 updates, not 640.
    assert 4 * large != adapted


def test_regime_steps_refuses_an_unknown_regime():
    with pytest.raises(ValueError, match="regime must be"):
        ghost.regime_steps(4000, SETTINGS, "large", "longer")


def test_claims_rest_on_precise_statistics_and_pair_ema_with_precise():
    for claim in ghost.PROTOCOL.claims:
        if claim.name != "stale_ema":
            assert claim.comparison.a.startswith("precise_") and claim.comparison.b.startswith(
                "precise_"
            )
    (stale,) = [c for c in ghost.PROTOCOL.claims if c.name == "stale_ema"]
    assert stale.comparison.test == "paired"
    assert ghost.ARMS["large_ghost_ra"] == ("large", "ghost", "updates")
