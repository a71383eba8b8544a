using System.Collections;
using System.Runtime.InteropServices;
using System.Text;

namespace TcpFork;

/// <summary>
/// A program, its argv and its environment as NUL-terminated UTF-8 in native memory, ready for
/// posix_spawn or execve: built once, so nothing is marshalled per connection.
/// </summary>
internal sealed unsafe class NativeCommand : IDisposable
{
    private readonly List<nint> _blocks = [];

    private NativeCommand(string path, IReadOnlyList<string> argv, IReadOnlyList<string> env, int reservedEnvSlots = 0)
    {
        Path = Utf8Z(path);
        Argv = Table(argv);
        Envp = Table(env, reservedEnvSlots);
        EnvSlots = Envp + env.Count;
        ReservedEnvSlots = reservedEnvSlots;
    }

    /// <summary>The environment entries after the fixed ones, for per-connection values; NULL-terminated after the last one set.</summary>
    public byte** EnvSlots { get; }

    public int ReservedEnvSlots { get; }

    /// <summary>
    /// <paramref name="file"/> (looked up in PATH by posix_spawnp/execvpe) with <paramref name="argv"/>
    /// and the given environment, plus room for <paramref name="reservedEnvSlots"/> entries set per use.
    /// </summary>
    public static NativeCommand Program(string file, IReadOnlyList<string> argv, IEnumerable<string> env, int reservedEnvSlots) =>
        new(file, argv, env.ToList(), reservedEnvSlots);

    public byte* Path { get; }

    public byte** Argv { get; }

    public byte** Envp { get; }

    /// <summary>
    /// This same program run the same way (the executable and /proc/self/cmdline, so under
    /// <c>dotnet x.dll</c> too), with this process's environment less <paramref name="remove"/>
    /// plus <paramref name="add"/>.
    /// </summary>
    public static NativeCommand ThisProgram(IEnumerable<string> remove, IEnumerable<string> add) => ThisProgram(Environ(remove).Concat(add));

    /// <summary>This same program run the same way, with exactly the environment <paramref name="env"/>.</summary>
    public static NativeCommand ThisProgram(IEnumerable<string> env)
    {
        string path = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this program's executable");
        string[] argv = Encoding.UTF8.GetString(File.ReadAllBytes("/proc/self/cmdline")).TrimEnd('\0').Split('\0');
        return new NativeCommand(path, argv, env.ToList());
    }

    /// <summary>This process's environment as KEY=VALUE, less the named variables and less any of the spawned child role's.</summary>
    public static IEnumerable<string> Environ(IEnumerable<string> remove)
    {
        var skip = new HashSet<string>(remove, StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            if (!skip.Contains((string)e.Key) && !ChildRole.IsRoleVariable((string)e.Key))
            {
                yield return $"{e.Key}={e.Value}";
            }
        }
    }

    /// <summary>
    /// Where the value of the environment entry <paramref name="key"/> starts, to rewrite in place per
    /// use (found once, at start: looking it up allocates).
    /// </summary>
    public byte* ValueOf(string key)
    {
        byte[] prefix = Encoding.UTF8.GetBytes(key + "=");
        for (byte** e = Envp; *e != null; e++)
        {
            ReadOnlySpan<byte> entry = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(*e);
            if (entry.StartsWith(prefix))
            {
                return *e + prefix.Length;
            }
        }
        throw new KeyNotFoundException(key);
    }

    private byte* Utf8Z(string s)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        byte* p = (byte*)Alloc(n + 1);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
        return p;
    }

    private byte** Table(IReadOnlyList<string> items, int reserved = 0)
    {
        byte** t = (byte**)Alloc((items.Count + reserved + 1) * sizeof(nint));
        for (int i = 0; i < items.Count; i++)
        {
            t[i] = Utf8Z(items[i]);
        }
        return t;
    }

    private void* Alloc(int size)
    {
        void* p = NativeMemory.AllocZeroed((nuint)size);
        _blocks.Add((nint)p);
        return p;
    }

    public void Dispose()
    {
        foreach (nint p in _blocks)
        {
            NativeMemory.Free((void*)p);
        }
        _blocks.Clear();
    }
}
