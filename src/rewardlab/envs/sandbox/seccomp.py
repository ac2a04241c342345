"""A seccomp filter for sandboxed commands, written as a classic BPF program in pure Python.

Bubblewrap loads it (``bwrap --seccomp FD``) into the sandbox's PID 1 just before that starts,
so it binds the runner and every command. It returns ``EPERM`` for system calls a shell command
never needs and that widen the kernel attack surface or escape the accounting: io_uring, ptrace
and cross-process memory access, keyrings, bpf, perf events, userfaultfd, module and kexec
loading, mounts and namespace changes, handle-based opens, and System V IPC (whose message
queues and shared memory are not bounded by the sandbox's mounts). ``memfd_create`` and
``memfd_secret`` are blocked too when no memory cgroup counts them (``block_memfd``).
``clone3`` returns ``ENOSYS`` so that libc falls back to ``clone``, whose flags need capabilities
the sandbox does not have. System calls of a foreign ABI (i386 or x32 on x86-64) are refused.

Only x86-64 and aarch64 are known; elsewhere `build_filter` returns ``None`` and the sandbox
says so in its mechanisms.
"""

from __future__ import annotations

import errno
import platform
import struct

_ARCHES = {
    # machine: (AUDIT_ARCH value, syscall numbers)
    "x86_64": (0xC000003E, {
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "kcmp": 312,
        "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "mount": 165, "umount2": 166, "pivot_root": 155,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "swapon": 167, "swapoff": 168, "reboot": 169, "syslog": 103, "acct": 163,
        "quotactl": 179, "quotactl_fd": 443, "open_by_handle_at": 304, "name_to_handle_at": 303,
        "fanotify_init": 300, "lookup_dcookie": 212, "setns": 308, "unshare": 272, "iopl": 172, "ioperm": 173,
        "vhangup": 153, "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "msgget": 68, "msgsnd": 69,
        "msgrcv": 70, "msgctl": 71, "semget": 64, "semop": 65, "semctl": 66, "semtimedop": 220,
        "memfd_create": 319, "memfd_secret": 447, "clone3": 435,
    }),
    "aarch64": (0xC00000B7, {
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438, "kcmp": 272,
        "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "mount": 40, "umount2": 39, "pivot_root": 41,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "swapon": 224, "swapoff": 225, "reboot": 142, "syslog": 116, "acct": 89,
        "quotactl": 60, "quotactl_fd": 443, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "fanotify_init": 262, "lookup_dcookie": 18, "setns": 268, "unshare": 97,
        "vhangup": 58, "shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "msgget": 186, "msgsnd": 189,
        "msgrcv": 188, "msgctl": 187, "semget": 190, "semop": 193, "semctl": 191, "semtimedop": 192,
        "memfd_create": 279, "memfd_secret": 447, "clone3": 435,
    }),
}
MEMFD_CALLS = ("memfd_create", "memfd_secret")
ENOSYS_CALLS = ("clone3",)

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_X32_BIT = 0x40000000


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def blocked_calls(block_memfd: bool) -> list[str]:
    """Names of the system calls the filter refuses (the same on every supported machine)."""
    names = sorted(_ARCHES["x86_64"][1])
    return [name for name in names if block_memfd or name not in MEMFD_CALLS]


def build_filter(block_memfd: bool, machine: str | None = None) -> bytes | None:
    """The BPF program (an array of ``struct sock_filter``) for this machine, or ``None`` if unknown."""
    known = _ARCHES.get(machine or platform.machine())
    if known is None:
        return None
    arch, numbers = known
    refused = [numbers[name] for name in blocked_calls(block_memfd) if name in numbers and name not in ENOSYS_CALLS]
    no_such = [numbers[name] for name in ENOSYS_CALLS if name in numbers]
    checks = [(number, "eperm") for number in refused] + [(number, "enosys") for number in no_such]
    body: list[tuple[int, int, int, object]] = [(_LD_W_ABS, 0, 0, 4), (_JEQ_K, 1, 0, arch), ("jump", "eperm", 0, 0),
                                                (_LD_W_ABS, 0, 0, 0)]
    if arch == 0xC000003E:
        body.append((_JGE_K, "eperm", 0, _X32_BIT))
    for number, target in checks:
        body.append((_JEQ_K, target, 0, number))
    body.append((_RET_K, 0, 0, _RET_ALLOW))
    labels = {"eperm": len(body), "enosys": len(body) + 1}
    body += [(_RET_K, 0, 0, _RET_ERRNO | errno.EPERM), (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    program = bytearray()
    for index, (code, jt, jf, k) in enumerate(body):
        if code == "jump":  # unconditional: "ja" to the label
            offset = labels[str(jt)] - index - 1
            program += _instruction(0x05, 0, 0, offset)
            continue
        if isinstance(jt, str):
            jt = labels[jt] - index - 1
            if jt > 255:
                raise ValueError("seccomp filter too long for 8-bit jumps")
        program += _instruction(int(code), int(jt), int(jf), int(k))  # type: ignore[arg-type]
    return bytes(program)
