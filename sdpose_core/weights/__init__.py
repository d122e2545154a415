"""Where a model's weights come from: our Hugging Face style folders, official SDPose checkpoints (key maps that
assert every name and shape), training states, and the `WeightsInfo` record that travels with every result."""
