include $(sort $(wildcard $(BR2_EXTERNAL_RAMBOOT_PATH)/package/*/*.mk))
