using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    // glibc's opaque types are 336 and 80 bytes on x86-64; room to spare.
    internal const int PosixSpawnAttrSize = 512;
    internal const int PosixSpawnFileActionsSize = 128;
    internal const short POSIX_SPAWN_SETPGROUP = 0x02, POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08;

    /// <summary>posix_spawn(3); returns the error number itself (0 on success), never sets errno.</summary>
    [LibraryImport(Libc, EntryPoint = "posix_spawn")]
    internal static partial int PosixSpawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_init")]
    internal static partial int PosixSpawnAttrInit(void* attr);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setflags")]
    internal static partial int PosixSpawnAttrSetFlags(void* attr, short flags);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setpgroup")]
    internal static partial int PosixSpawnAttrSetPGroup(void* attr, int pgroup);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setsigmask")]
    internal static partial int PosixSpawnAttrSetSigMask(void* attr, SigSet* mask);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setsigdefault")]
    internal static partial int PosixSpawnAttrSetSigDefault(void* attr, SigSet* set);

    [LibraryImport(Libc, EntryPoint = "posix_spawn_file_actions_init")]
    internal static partial int PosixSpawnFileActionsInit(void* actions);

    [LibraryImport(Libc, EntryPoint = "posix_spawn_file_actions_destroy")]
    internal static partial int PosixSpawnFileActionsDestroy(void* actions);

    [LibraryImport(Libc, EntryPoint = "posix_spawn_file_actions_adddup2")]
    internal static partial int PosixSpawnFileActionsAddDup2(void* actions, int fd, int newFd);

    [LibraryImport(Libc, EntryPoint = "posix_spawn_file_actions_addclosefrom_np")]
    internal static partial int PosixSpawnFileActionsAddCloseFrom(void* actions, int from);
}

internal static unsafe partial class Interop
{
    /// <summary>posix_spawnp(3): like posix_spawn, but <paramref name="file"/> is looked up in PATH.</summary>
    [LibraryImport(Libc, EntryPoint = "posix_spawnp")]
    internal static partial int PosixSpawnP(int* pid, byte* file, void* fileActions, void* attr, byte** argv, byte** envp);
}
