"""Speed measurements on this machine: SDPose per person across backends (`speed`), which models are timed
(`models`), the person detector and baselines (`sections`), and the report (`report`)."""
