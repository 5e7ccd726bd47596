package firecracker

import "os"

// SetKVM replaces the KVM device and its KVM_GET_API_VERSION ioctl until
// the returned function is called (nil apiVersion keeps the real ioctl).
func SetKVM(device string, apiVersion func(*os.File) (int, error)) (restore func()) {
	oldDevice, oldVersion := kvmDevice, kvmAPIVersion
	kvmDevice = device
	if apiVersion != nil {
		kvmAPIVersion = apiVersion
	}
	return func() { kvmDevice, kvmAPIVersion = oldDevice, oldVersion }
}

var KVMOpenError = kvmOpenError
