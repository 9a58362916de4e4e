"""Disk outputs: partitioned raw disks and the virtual-disk containers that wrap them."""
