"""The Triton backend: fused group -> kernel IR -> Triton source -> cached, launched kernel."""
