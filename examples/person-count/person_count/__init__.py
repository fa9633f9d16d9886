"""A Posefleet stage plug-in: people counts from the pose stage's skeletons."""
