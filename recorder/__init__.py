"""The recorder: loads the BPF programs, runs the session, writes the file."""
