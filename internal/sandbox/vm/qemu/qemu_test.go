package qemu_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execd/execd/internal/sandbox/vm/qemu"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

func TestArgs(t *testing.T) {
	spec := vmm.Spec{
		Label:  "execd-vm:host,1:42",
		Kernel: "/k/vmlinux", Initramfs: "/k/initramfs.cpio.gz", Cmdline: "foo=1",
		VCPUs: 2, MemoryMiB: 1024,
		Drives: []vmm.Drive{{ID: "workspace", Path: "/w/ws,1.img"}, {ID: "root", Path: "/r/root.erofs", ReadOnly: true, Direct: true}},
		Net:    &vmm.Net{Tap: "execd-tap0", MAC: "02:00:00:00:00:01", Address: netip.MustParsePrefix("10.0.0.2/30"), Gateway: netip.MustParseAddr("10.0.0.1")},
	}
	got := strings.Join(qemu.Args(spec, qemu.AccelTCG, 3), " ")
	for _, want := range []string{
		"-M microvm,x-option-roms=off -accel tcg -cpu max -smp 2 -m 1024",
		"-kernel /k/vmlinux -initrd /k/initramfs.cpio.gz -append console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests ",
		" tsc=reliable execd.ip=10.0.0.2/30 execd.gw=10.0.0.1 execd.mac=02:00:00:00:00:01 execd.drives=workspace,root foo=1 -name",
		"-drive if=none,id=d0,format=raw,file=/w/ws,,1.img -device virtio-blk-device,drive=d0,serial=workspace",
		"-drive if=none,id=d1,format=raw,file=/r/root.erofs,read-only=on,cache=none -device virtio-blk-device,drive=d1,serial=root",
		"-netdev tap,id=net0,script=no,downscript=no,ifname=execd-tap0 -device virtio-net-device,netdev=net0,mac=02:00:00:00:00:01",
		"-chardev socket,id=agent,fd=3 -device virtserialport,chardev=agent,name=org.execd.agent",
		"-nodefaults",
		"-name execd-vm:host,,1:42,process=execd-vm:host,,1:42",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	if got := strings.Join(qemu.Args(vmm.Spec{EmulatedCPU: "qemu64"}, qemu.AccelTCG, 3), " "); !strings.Contains(got, "-cpu qemu64") {
		t.Errorf("emulated cpu: %s", got)
	}
	if kvm := strings.Join(qemu.Args(vmm.Spec{}, qemu.AccelKVM, 3), " "); !strings.Contains(kvm, "-accel kvm -cpu host -smp 1 -m 512") {
		t.Errorf("kvm args: %s", kvm)
	}
}

func TestChooseAccel(t *testing.T) {
	m := &qemu.Monitor{KVMDevice: filepath.Join(t.TempDir(), "kvm")}
	_, err := m.ChooseAccel(false)
	if !errors.Is(err, vmm.ErrNoKVM) || !strings.Contains(err.Error(), "EXECUTOR_VM_ALLOW_EMULATION=true") {
		t.Fatalf("ChooseAccel(false) = %v", err)
	}
	if a, err := m.ChooseAccel(true); err != nil || a != qemu.AccelTCG {
		t.Fatalf("ChooseAccel(true) = %v, %v", a, err)
	}
	if err := (&qemu.Monitor{Binary: "/nonexistent/qemu"}).Check(context.Background(), true); err != nil {
		t.Errorf("Check with a given binary: %v", err)
	}
	if err := (&qemu.Monitor{KVMDevice: m.KVMDevice}).Check(context.Background(), false); !errors.Is(err, vmm.ErrNoKVM) {
		if !strings.Contains(fmt.Sprint(err), "not installed") {
			t.Errorf("Check without KVM: %v", err)
		}
	}
	// Start refuses before running anything.
	_, err = m.Start(context.Background(), vmm.Spec{Kernel: "/nonexistent", Initramfs: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "executor install vm") {
		t.Fatalf("Start = %v", err)
	}
}

func TestSpec_Validate(t *testing.T) {
	for _, bad := range []vmm.Spec{
		{},
		{Kernel: "k", Initramfs: "i", Drives: []vmm.Drive{{ID: "a/b", Path: "x"}}},
		{Kernel: "k", Initramfs: "i", Drives: []vmm.Drive{{ID: "this-id-is-far-too-long", Path: "x"}}},
		{Kernel: "k", Initramfs: "i", Drives: []vmm.Drive{{ID: "a", Path: "x"}, {ID: "a", Path: "y"}}},
		{Kernel: "k", Initramfs: "i", Drives: []vmm.Drive{{ID: "a"}}},
		{Kernel: "k", Initramfs: "i", VCPUs: -1},
		{Kernel: "k", Initramfs: "i", Net: &vmm.Net{}},
		{Kernel: "k", Initramfs: "i", Label: "a b"},
		{Kernel: "k", Initramfs: "i", Label: "a=b"},
		{Kernel: "k", Initramfs: "i", Net: &vmm.Net{Tap: "t", Address: netip.MustParsePrefix("fd00::2/64")}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: valid", bad)
		}
	}
}
