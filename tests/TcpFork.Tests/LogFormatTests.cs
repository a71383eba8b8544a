using System.Net;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace TcpFork.Tests;

/// <summary>
/// Every log line's format lives in ServerLog.Events.cs, one method each, its format in a
/// [LineFormat]; docs/logging.md lists the lines. These tests hold the three together, so the doc
/// cannot drift: each method writes what its format says, and the doc lists exactly those formats.
/// </summary>
public partial class LogFormatTests
{
    private static IEnumerable<(MethodInfo Method, string[] Formats)> Events() =>
        typeof(ServerLog).GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .Select(m => (m, m.GetCustomAttributes<LineFormatAttribute>().Select(a => a.Format).ToArray()))
            .Where(e => e.Item2.Length > 0);

    /// <summary>The formats as docs/logging.md writes them: <c>`tcpfork: …`</c> at the start of a table row (markdown's <c>\|</c> unescaped).</summary>
    private static HashSet<string> DocumentedFormats()
    {
        string doc = File.ReadAllText(Path.Combine(Binaries.RepoRoot, "docs", "logging.md"));
        return [.. DocRow().Matches(doc).Select(m => m.Groups[1].Value.Replace("\\|", "|", StringComparison.Ordinal))];
    }

    [Fact]
    public void The_doc_lists_every_format_and_no_other()
    {
        var code = Events().SelectMany(e => e.Formats).Select(f => ServerLog.Prefix + f).ToHashSet();
        HashSet<string> doc = DocumentedFormats();
        // The CLI's own two lines (usage and fatal errors) are written by the CLI; CliTests hold them.
        doc.RemoveWhere(f => f.StartsWith("tcpfork: usage:", StringComparison.Ordinal) || f.StartsWith("tcpfork: fatal:", StringComparison.Ordinal));
        Assert.True(code.SetEquals(doc),
            $"in the code, not in docs/logging.md: [{string.Join(" | ", code.Except(doc))}]; in the doc, not in the code: [{string.Join(" | ", doc.Except(code))}]");
    }

    [Fact]
    public void Every_event_writes_a_line_its_format_matches()
    {
        string path = Path.GetTempFileName();
        try
        {
            var written = new List<(string Method, string[] Formats)>();
            using (SafeFileHandle file = File.OpenHandle(path, FileMode.Truncate, FileAccess.Write))
            {
                var log = new ServerLog(LogLevel.Verbose, (int)file.DangerousGetHandle());
                foreach ((MethodInfo method, string[] formats) in Events())
                {
                    method.Invoke(log, [.. method.GetParameters().Select(p => Sample(p.ParameterType))]);
                    log.Flush();
                    written.Add((method.Name, formats));
                }
            }
            string[] lines = File.ReadAllLines(path);
            Assert.Equal(written.Count, lines.Length);
            for (int i = 0; i < lines.Length; i++)
            {
                Assert.True(written[i].Formats.Any(f => Pattern(f).IsMatch(lines[i])),
                    $"{written[i].Method} wrote '{lines[i]}', which matches none of: {string.Join(" / ", written[i].Formats)}");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A format as a regex: UPPER-CASE words (and …) are fields, <c>[a|b]</c> is an optional choice, the rest is literal.</summary>
    private static Regex Pattern(string format)
    {
        var regex = new StringBuilder("^").Append(Regex.Escape(ServerLog.Prefix));
        foreach (Match token in FormatToken().Matches(format))
        {
            string t = token.Value;
            regex.Append(t switch
            {
                _ when FieldWord().IsMatch(t) || t == "…" => ".*?",
                _ when t.StartsWith('[') => "(?:" + string.Join('|', t[1..^1].Split('|').Select(Regex.Escape)) + ")?",
                _ => Regex.Escape(t),
            });
        }
        return new Regex(regex.Append('$').ToString());
    }

    private static object Sample(Type type)
    {
        Type t = type.IsByRef ? type.GetElementType()! : type;
        SockAddr peer = SockAddr.FromIP(IPAddress.Parse("192.0.2.7"), 5555);
        return t switch
        {
            _ when t == typeof(int) => 7,
            _ when t == typeof(long) => 1234L,
            _ when t == typeof(bool) => true,
            _ when t == typeof(string) => "x",
            _ when t == typeof(TimeSpan) => TimeSpan.FromSeconds(2),
            _ when t == typeof(Errno) => Errno.EAGAIN,
            _ when t == typeof(SockAddr) => peer,
            _ when t == typeof(Accepted) => new Accepted { Peer = peer, Local = SockAddr.FromIP(IPAddress.Loopback, 80), Number = 1, FromSameIp = 1 },
            _ when t == typeof(Verdict) => Verdict.DenyRate,
            _ when t == typeof(Repeat) => Repeat.LaunchFailed,
            _ when t == typeof(RepeatEnd) => RepeatEnd.Cleared,
            _ when t == typeof(Exception) => new InvalidOperationException("boom"),
            _ => throw new NotSupportedException($"no sample value of {t} for a log event; add one here"),
        };
    }

    [GeneratedRegex(@"^\| `(tcpfork: [^`]+)`", RegexOptions.Multiline)]
    private static partial Regex DocRow();

    [GeneratedRegex(@"\[[^\]]*\]|[A-Z][A-Z0-9_-]*|…|[^A-Z\[…]+|.")]
    private static partial Regex FormatToken();

    [GeneratedRegex(@"^[A-Z][A-Z0-9_-]*$")]
    private static partial Regex FieldWord();
}
