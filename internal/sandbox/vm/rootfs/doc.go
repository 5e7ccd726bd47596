// Package rootfs turns the container image of a step into a read-only root
// file system image that a micro-VM attaches as a block device: nothing of
// the host's file system is shared with the guest.
//
// A [Cache] looks an image up (the local Docker daemon, an OCI image
// layout, a registry through its mirrors: [Source]), extracts its layers
// into a private directory ([Flatten]: whiteouts, owners, modes, links;
// every path resolved inside the tree, so that a malicious layer cannot
// write outside it), makes an EROFS or ext4 image of it ([MakeImage]),
// and keeps the result on disk by the image's config digest, with the
// image's run configuration ([ImageConfig]) next to it. Builds of one
// image by several jobs or executors happen once; images in use are
// leased and never evicted; [Cache.Clean] removes what a crashed build
// left. docs/vm-images.md describes the cache and its settings.
package rootfs
