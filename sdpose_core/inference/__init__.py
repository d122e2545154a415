"""Top-down pose estimation: the Predictor (crops, cycle stepping, results, backends), media folders and video,
the live stream session and tracking, baselines (MediaPipe BlazePose, PP-TinyPose) and teacher pseudo-labels."""
