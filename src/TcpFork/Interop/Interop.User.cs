using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    /// <summary>The start of glibc's struct passwd (the same on every 64-bit Linux; InteropLayoutTests).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Passwd
    {
        public byte* Name;
        public byte* Password;
        public uint Uid;
        public uint Gid;
    }

    /// <summary>The start of glibc's struct group.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Group
    {
        public byte* Name;
        public byte* Password;
        public uint Gid;
    }

    [LibraryImport(Libc, EntryPoint = "getpwnam", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial Passwd* GetPwNam(string name);

    [LibraryImport(Libc, EntryPoint = "getgrnam", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial Group* GetGrNam(string name);

    [LibraryImport(Libc, EntryPoint = "setgroups", SetLastError = true)]
    internal static partial int SetGroups(nuint size, uint* groups);

    [LibraryImport(Libc, EntryPoint = "setgid", SetLastError = true)]
    internal static partial int SetGid(uint gid);

    [LibraryImport(Libc, EntryPoint = "setuid", SetLastError = true)]
    internal static partial int SetUid(uint uid);

    [LibraryImport(Libc, EntryPoint = "geteuid")]
    internal static partial uint GetEUid();

    [LibraryImport(Libc, EntryPoint = "getegid")]
    internal static partial uint GetEGid();
}
