namespace TcpFork;

/// <summary>How each connection's process is created.</summary>
public enum ProcessMode
{
    /// <summary>Fork when that is safe (NativeAOT on Linux), otherwise spawn.</summary>
    Auto,

    /// <summary>fork(2): the child is a copy of the parent. NativeAOT only; see docs/fork-safety.md.</summary>
    Fork,

    /// <summary>posix_spawn(3) of this program again, the connection inherited as a descriptor. Works everywhere.</summary>
    Spawn,
}
