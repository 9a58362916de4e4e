"""The disk family: partitioned disk images (MBR/GPT, FAT, bootloaders) and the VM and cloud
containers around them (raw, qcow2, VHD, VMDK, gcp). A container wraps one partitioned disk,
so a partition table or filesystem is written once for every container."""
