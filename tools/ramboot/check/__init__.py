"""`ramboot check`: verify the defconfigs and kernel fragments against real Kconfig trees."""
