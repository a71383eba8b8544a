using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// statx(2)'s result. Unlike struct stat, its layout is the same on every architecture (x64 and arm64
/// alike), so it is read at the kernel's fixed offsets.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 256)]
internal struct StatX
{
    [FieldOffset(28)] public ushort Mode;
    [FieldOffset(32)] public ulong Inode;
    [FieldOffset(40)] public ulong Size;
    [FieldOffset(96)] public long CtimeSeconds;
    [FieldOffset(104)] public uint CtimeNanoseconds;
    [FieldOffset(112)] public long MtimeSeconds;
    [FieldOffset(120)] public uint MtimeNanoseconds;
    [FieldOffset(136)] public uint DevMajor;
    [FieldOffset(140)] public uint DevMinor;

    public readonly bool IsRegularFile => (Mode & 0xF000) == 0x8000;

    /// <summary>True when both name the same file (device and inode).</summary>
    public readonly bool SameFile(in StatX other) => Inode == other.Inode && DevMajor == other.DevMajor && DevMinor == other.DevMinor;

    /// <summary>
    /// True when both are the same file with the same size, modification and change times (to the
    /// nanosecond): a file renamed over it, rewritten or touched since changes one of them.
    /// </summary>
    public readonly bool SameVersion(in StatX other) => SameFile(other) && Size == other.Size
        && MtimeSeconds == other.MtimeSeconds && MtimeNanoseconds == other.MtimeNanoseconds
        && CtimeSeconds == other.CtimeSeconds && CtimeNanoseconds == other.CtimeNanoseconds;
}

internal static unsafe partial class Interop
{
    internal const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000;
    internal const uint STATX_BASIC_STATS = 0x7ff;
    internal const int O_NONBLOCK = 0x800;

    [LibraryImport(Libc, EntryPoint = "statx", SetLastError = true)]
    internal static partial int StatX(int dirFd, byte* path, int flags, uint mask, StatX* result);

    /// <summary>statx of a path (not following a final symlink); false with errno set when it fails.</summary>
    internal static bool TryStat(string path, bool followLinks, out StatX result) =>
        TryStat(System.Text.Encoding.UTF8.GetBytes(path + "\0"), followLinks, out result);

    /// <summary>statx of a path given as NUL-terminated bytes (made once by the caller): no allocation.</summary>
    internal static bool TryStat(byte[] nulTerminatedPath, bool followLinks, out StatX result)
    {
        fixed (byte* p = nulTerminatedPath)
        fixed (StatX* r = &result)
        {
            return StatX(AT_FDCWD, p, followLinks ? 0 : AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, r) == 0;
        }
    }

    /// <summary>statx of an open descriptor.</summary>
    internal static bool TryStat(int fd, out StatX result)
    {
        fixed (byte* p = "\0"u8)
        fixed (StatX* r = &result)
        {
            return StatX(fd, p, AT_EMPTY_PATH, STATX_BASIC_STATS, r) == 0;
        }
    }
}
