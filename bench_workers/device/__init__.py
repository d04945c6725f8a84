"""The device and its host: the fingerprint, the measured ceilings (peaks) and the spec sheet,
CUDA devices by UUID (cuda_device), and the optional hardware libraries (optional)."""
