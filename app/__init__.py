"""SDPose Studio's Gradio front end. Callbacks stay thin: the logic lives in `sdpose_core`."""
