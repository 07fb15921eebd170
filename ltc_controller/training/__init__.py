"""Offline tools: rosbag2 demonstrations, recording, training, closed-loop evaluation."""
