using Microsoft.Win32.SafeHandles;

namespace TcpFork;

/// <summary>
/// Reads a rules file for the parent, at start and on SIGHUP, where nothing a file holds may stop,
/// hang or crash it: the file is opened without blocking (a FIFO would otherwise block open(2) until a
/// writer came), must be a regular file (a link to /dev/zero is not) of at most <see cref="MaxBytes"/>,
/// and every error is a <see cref="FormatException"/> naming the file and line, its text cut short and
/// with control characters escaped (<see cref="Printable"/>).
/// </summary>
internal static unsafe class RulesFile
{
    public const int MaxBytes = 16 << 20;
    public const int MaxLineLength = 1024;

    public static List<AccessRule> Read(string path)
    {
        if (string.IsNullOrEmpty(path))
        {
            throw new FormatException("TcpForkServerOptions.RulesFile is an empty path");
        }
        string name = Printable.Truncate(path);
        int fd;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0"))
        {
            fd = Interop.OpenReadOnly(p, Interop.O_NONBLOCK);
        }
        if (fd < 0)
        {
            throw new FormatException($"{name}: {SystemCallException.Describe((int)Interop.LastError)}");
        }
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (!Interop.TryStat(fd, out StatX stat))
        {
            throw new FormatException($"{name}: {SystemCallException.Describe((int)Interop.LastError)}");
        }
        if (!stat.IsRegularFile)
        {
            throw new FormatException($"{name}: not a regular file");
        }
        if (stat.Size > MaxBytes)
        {
            throw new FormatException($"{name}: larger than {MaxBytes >> 20} MiB");
        }
        using var reader = new StreamReader(new FileStream(handle, FileAccess.Read, bufferSize: 0), System.Text.Encoding.UTF8);
        var rules = new List<AccessRule>();
        string? line;
        long read = 0;
        for (int number = 1; (line = reader.ReadLine()) is not null; number++)
        {
            read += line.Length + 1;
            if (read > MaxBytes)
            {
                throw new FormatException($"{name}: larger than {MaxBytes >> 20} MiB"); // it grew while read
            }
            if (line.Length > MaxLineLength)
            {
                throw new FormatException($"{name}:{number}: longer than {MaxLineLength} characters");
            }
            int hash = line.IndexOf('#', StringComparison.Ordinal);
            string rule = hash >= 0 ? line[..hash] : line;
            if (string.IsNullOrWhiteSpace(rule))
            {
                continue;
            }
            try
            {
                rules.Add(AccessRule.ParseLine(rule));
            }
            catch (FormatException e)
            {
                throw new FormatException($"{name}:{number}: {Printable.Truncate(e.Message, 2 * Printable.MaxLength)}", e);
            }
        }
        return rules;
    }
}
