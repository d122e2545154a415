"""Image and video I/O and drawing: every accepted image becomes HxWx3 uint8 RGB (`images`), video frames in and
H.264 out with keypoint smoothing (`video`), skeletons drawn on images (`draw`)."""
