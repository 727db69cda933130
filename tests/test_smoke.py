def test_campaign_starts(campaign):
    from ventures.services import campaign_transition

    c = campaign_transition(campaign=campaign, action="start", actor="t")
    assert c.status == "running"
