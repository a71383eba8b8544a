using System.Net;
using System.Net.Sockets;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
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
        string page = File.ReadAllText(Path.Combine(Binaries.RepoRoot, "docs", "logging.md"));
        return [.. DocRow().Matches(page).Select(m => m.Groups[1].Value.Replace("\\|", "|", StringComparison.Ordinal))];
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
                foreach ((MethodInfo method, string[] formats, object[] args) in Calls())
                {
                    method.Invoke(log, args);
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
    private static Regex Pattern(string format) => new("^" + Regex.Escape(ServerLog.Prefix) + PatternOf(format, ".*?") + "$");

    /// <summary>
    /// What is left of a text line once its JSON fields' values are taken out: the format with every field
    /// empty, but WHAT (a repeated warning's words, which its JSON event names) and upper-case words that are
    /// literal text (signal names, .NET…).
    /// </summary>
    private static Regex LiteralsPattern(string format) => new("^" + Regex.Escape(ServerLog.Prefix) + PatternOf(format, "") + "$");

    private static readonly HashSet<string> s_upperCaseLiterals = ["SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGCHLD", "RLIMIT_NPROC", "IP", "NET"];

    private static string PatternOf(string format, string field)
    {
        var regex = new StringBuilder();
        foreach (Match token in FormatToken().Matches(format))
        {
            string t = token.Value;
            regex.Append(t switch
            {
                "WHAT" => ".*?",
                _ when field.Length == 0 && s_upperCaseLiterals.Contains(t) => Regex.Escape(t),
                _ when token.Groups["field"].Success || t == "…" => field,
                _ when t.StartsWith('[') => "(?:" + string.Join('|', t[1..^1].Split('|').Select(choice => PatternOf(choice, field))) + ")?",
                _ => Regex.Escape(t),
            });
        }
        return regex.ToString();
    }

    /// <summary>Each event's text line and JSON line, with the same sample values, and the formats its method has.</summary>
    private static List<(string Method, string[] Formats, string Text, string Json)> BothForms()
    {
        string textPath = Path.GetTempFileName(), jsonPath = Path.GetTempFileName();
        try
        {
            var calls = Calls();
            using (SafeFileHandle text = File.OpenHandle(textPath, FileMode.Truncate, FileAccess.Write))
            using (SafeFileHandle json = File.OpenHandle(jsonPath, FileMode.Truncate, FileAccess.Write))
            {
                var textLog = new ServerLog(LogLevel.Verbose, (int)text.DangerousGetHandle());
                var jsonLog = new ServerLog(LogLevel.Verbose, (int)json.DangerousGetHandle(), LogFormat.Json);
                foreach ((MethodInfo method, _, object[] args) in calls)
                {
                    foreach (ServerLog log in new[] { textLog, jsonLog })
                    {
                        method.Invoke(log, args);
                        log.Flush();
                    }
                }
            }
            string[] textLines = File.ReadAllLines(textPath), jsonLines = File.ReadAllLines(jsonPath);
            Assert.Equal(calls.Count, textLines.Length);
            Assert.Equal(calls.Count, jsonLines.Length);
            return [.. calls.Select((c, i) => (c.Method.Name, c.Formats, textLines[i], jsonLines[i]))];
        }
        finally
        {
            File.Delete(textPath);
            File.Delete(jsonPath);
        }
    }

    [Fact]
    public void Every_event_in_json_is_one_object_with_ts_event_and_the_text_lines_fields_typed()
    {
        Dictionary<string, string> documented = DocumentedEvents();
        string page = File.ReadAllText(Path.Combine(Binaries.RepoRoot, "docs", "logging.md"));
        var seen = new HashSet<string>();
        foreach ((string method, string[] formats, string text, string json) in BothForms())
        {
            bool primary = seen.Add(method); // the sample call; the others take each parameter's other values
            using JsonDocument doc = JsonDocument.Parse(json);
            JsonProperty[] properties = [.. doc.RootElement.EnumerateObject()];
            Assert.True(properties.Length >= 2 && properties[0].Name == "ts" && properties[1].Name == "event", $"{method}: {json} does not start with ts and event");
            Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", properties[0].Value.GetString());
            DateTime ts = DateTime.Parse(properties[0].Value.GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal);
            Assert.InRange(ts, DateTime.UtcNow.AddMinutes(-1), DateTime.UtcNow.AddSeconds(1));

            // Each field's value is in the text line, in order; what is left is the format's literal text.
            string rest = text;
            int at = 0;
            foreach (JsonProperty field in properties[2..])
            {
                string value = field.Value.ValueKind == JsonValueKind.String ? field.Value.GetString()! : field.Value.GetRawText();
                Assert.True(field.Value.ValueKind == JsonValueKind.Number || !double.TryParse(value, CultureInfo.InvariantCulture, out _),
                    $"{method}: the number {field.Name} is a JSON string in {json}");
                at = rest.IndexOf(value, at, StringComparison.Ordinal);
                Assert.True(at >= 0, $"{method}: {field.Name}={value} is not in the text line '{text}' (in order)");
                rest = rest.Remove(at, value.Length);
            }
            string format = formats.Single(f => Pattern(f).IsMatch(text));
            // (For a repeated warning's other kinds, the words before "; repeated" are the event's, not fields.)
            Assert.True((!primary && format.StartsWith("warning: WHAT", StringComparison.Ordinal)) || LiteralsPattern(format).IsMatch(rest),
                $"{method}: '{text}' without its JSON fields is '{rest}': a part of the text line is not a field of {json}");

            // docs/logging.md names the event and its fields beside the format.
            // (A format written under several event names, the repeated warnings', has its row for the sample
            // call; the doc's text names the others.)
            string names = string.Join(", ", properties[2..].Select(p => p.Name));
            string eventName = properties[1].Value.GetString()!;
            if (primary || documented[ServerLog.Prefix + format].StartsWith(eventName + ":", StringComparison.Ordinal))
            {
                Assert.Equal(documented[ServerLog.Prefix + format], $"{eventName}: {names}".TrimEnd(':', ' '));
            }
            else
            {
                Assert.True(page.Contains($"`{eventName}`", StringComparison.Ordinal), $"{method}: docs/logging.md does not name the event `{eventName}` ({json})");
            }
        }
    }

    [Fact]
    public void Json_strings_are_escaped_and_invalid_text_becomes_U_FFFD()
    {
        byte[] buffer = new byte[256];
        var line = new JsonLine(buffer, "e"u8);
        line.String("utf8", [(byte)'a', 0xff, (byte)'"', 0x01, (byte)'\\', 0xc3, 0xa9, 0xe2, 0x82]);
        line.String("utf16", "b\n\t\ud800\u007f\"é€");
        int n = line.Finish();
        using JsonDocument doc = JsonDocument.Parse(buffer.AsMemory(0, n));
        Assert.Equal("a\ufffd\"\u0001\\é\ufffd", doc.RootElement.GetProperty("utf8").GetString());
        Assert.Equal("b\n\t\ufffd\u007f\"é€", doc.RootElement.GetProperty("utf16").GetString());
        Assert.DoesNotContain((byte)'\n', buffer.AsSpan(0, n).ToArray());
    }

    [Fact]
    public void A_json_line_too_long_for_the_buffer_stays_one_object_marked_truncated()
    {
        byte[] buffer = new byte[128];
        var line = new JsonLine(buffer, "e"u8);
        line.String("message", new string('m', 500));
        int n = line.Finish();
        using JsonDocument doc = JsonDocument.Parse(buffer.AsMemory(0, n));
        Assert.True(doc.RootElement.GetProperty("truncated").GetBoolean());
        Assert.Equal("e", doc.RootElement.GetProperty("event").GetString());
    }

    /// <summary>The real server: every stderr line is a JSON object; the parent's and the child's events name the same child and client.</summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Echo_with_log_format_json_writes_only_json_and_its_events_name_the_child_and_the_client(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--log-format", "json", "-v", "--log-timestamps");
        int clientPort;
        using (Socket client = EchoClient.Connect(server.Port))
        {
            clientPort = ((IPEndPoint)client.LocalEndPoint!).Port;
            Assert.Equal("hello"u8.ToArray(), await EchoClient.ExchangeAsync(client, "hello"u8.ToArray()));
        }
        server.WaitForLog("^\\{.*\"event\":\"end\"");
        server.Signal(Native.SIGTERM);
        Assert.Equal(0, server.WaitForExit(TimeSpan.FromSeconds(20)));

        var events = new List<JsonElement>();
        foreach (string line in server.StderrLines)
        {
            using JsonDocument doc = JsonDocument.Parse(line);
            Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", doc.RootElement.GetProperty("ts").GetString());
            events.Add(doc.RootElement.Clone());
        }
        JsonElement Event(string name) => Assert.Single(events, e => e.GetProperty("event").GetString() == name);
        JsonElement ok = Event("ok"), end = Event("end"), launched = Event("launched"), echoed = Event("echo.received");
        int child = ok.GetProperty("pid").GetInt32();
        Assert.NotEqual(server.Pid, child);
        Assert.Equal(child, end.GetProperty("pid").GetInt32());
        Assert.Equal(child, launched.GetProperty("pid").GetInt32());
        Assert.Equal(child, echoed.GetProperty("pid").GetInt32()); // written by the child itself
        Assert.Equal(0, end.GetProperty("status").GetInt32());
        Assert.Equal(5, echoed.GetProperty("bytes").GetInt64());
        Assert.Equal("127.0.0.1", ok.GetProperty("peer_ip").GetString());
        Assert.Equal(clientPort, ok.GetProperty("peer_port").GetInt32());
        Assert.Equal(server.Port, ok.GetProperty("local_port").GetInt32());
        Assert.Equal($"127.0.0.1:{clientPort}", launched.GetProperty("peer").GetString());
        Assert.Equal(server.Pid, Event("start").GetProperty("pid").GetInt32());
        Assert.Equal(1, Event("exit").GetProperty("connections").GetInt64());
    }

    [Fact]
    public async Task Log_timestamps_start_each_text_line_with_the_time()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--log-timestamps");
        Assert.Equal("x"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "x"u8.ToArray()));
        server.WaitForLog(@"^\S+ tcpfork: end ");
        Assert.All(server.StderrLines, line => Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z tcpfork: ", line));
    }

    /// <summary>docs/logging.md's JSON column: format → <c>event: field, field</c>.</summary>
    private static Dictionary<string, string> DocumentedEvents() =>
        DocEventRow().Matches(File.ReadAllText(Path.Combine(Binaries.RepoRoot, "docs", "logging.md")))
            .ToDictionary(m => m.Groups[1].Value.Replace("\\|", "|", StringComparison.Ordinal), m => (m.Groups[2].Value + ": " + m.Groups[3].Value).TrimEnd(':', ' '));

    /// <summary>
    /// Every event method called with the sample values, and again with each other value a parameter can
    /// take that changes the line (a wait status that is an exit, not a signal; each repeated-warning kind
    /// and ending; each refusal; both sides of a flag), so every branch of every format is written.
    /// </summary>
    private static List<(MethodInfo Method, string[] Formats, object[] Args)> Calls()
    {
        var calls = new List<(MethodInfo, string[], object[])>();
        foreach ((MethodInfo method, string[] formats) in Events())
        {
            ParameterInfo[] parameters = method.GetParameters();
            object[] sample = [.. parameters.Select(p => Sample(p.ParameterType))];
            calls.Add((method, formats, sample));
            for (int i = 0; i < parameters.Length; i++)
            {
                foreach (object other in Alternatives(parameters[i]))
                {
                    object[] args = (object[])sample.Clone();
                    args[i] = other;
                    calls.Add((method, formats, args));
                }
            }
        }
        return calls;
    }

    private static IEnumerable<object> Alternatives(ParameterInfo p)
    {
        Type t = p.ParameterType.IsByRef ? p.ParameterType.GetElementType()! : p.ParameterType;
        return t switch
        {
            _ when t == typeof(int) && p.Name == "waitStatus" => [3 << 8], // exited 3 (the sample, 7, is SIGBUS)
            _ when t == typeof(int) && p.Name == "startingPid" => [0], // no upgrade under way: the parent is stopping
            _ when t == typeof(bool) => [false],
            _ when t == typeof(Repeat) => Enum.GetValues<Repeat>().Where(r => r != Repeat.LaunchFailed).Cast<object>(),
            _ when t == typeof(RepeatEnd) => Enum.GetValues<RepeatEnd>().Where(r => r != RepeatEnd.Cleared).Cast<object>(),
            _ when t == typeof(Verdict) => Enum.GetValues<Verdict>().Where(v => v is not (Verdict.Allow or Verdict.DenyRate)).Cast<object>(),
            _ => [],
        };
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
            _ when t == typeof(string) => "q9",
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

    [GeneratedRegex(@"^\| `(tcpfork: [^`]+)` \| `([a-z.-]+)`:? ?([a-z_, ]*) \|", RegexOptions.Multiline)]
    private static partial Regex DocEventRow();

    // An upper-case word is a field unless a lower-case letter follows (TcpForkNativeAotRuntime, PInvoke).
    [GeneratedRegex(@"\[[^\]]*\]|(?<field>(?>[A-Z][A-Z0-9_-]*)(?![a-z]))|…|[^A-Z\[…]+|.")]
    private static partial Regex FormatToken();
}
