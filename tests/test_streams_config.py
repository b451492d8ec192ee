"""The nginx-rtmp config renderer and checker, and the /stat parser (no processes needed)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.errors import InvalidInput, Unavailable
from backend.streams.nginx import parse_stat
from backend.streams.nginx_config import RenderOptions, check_config, render
from tests.nginx_rtmp import NGINX, tools_missing
from tests.test_deploy import compose_model  # noqa: F401 (fixture)

TOKEN = "config-test-token-" + "k" * 32

UNSAFE = """
worker_processes auto;
rtmp {
    server {
        listen 1935;
        notify_method get;
        application live {
            live on;
            on_publish https://auth.example.com/rtmp/on_publish;
        }
    }
}
http {
    log_format keys '$remote_addr $args';
    server {
        listen 8080;
        location /stat { rtmp_stat all; }
        location /control { rtmp_control all; allow all; }
    }
}
"""

STAT = """<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><uptime>3</uptime><naccepted>1</naccepted>
<server><application><name>live</name><live>
<stream><name>pub</name><time>12128</time><bw_in>812000</bw_in><bytes_in>49785</bytes_in><bw_audio>64000</bw_audio>
<bw_video>748000</bw_video>
<client><id>1</id><address>127.0.0.1</address><time>2303</time><dropped>0</dropped><publishing/><active/></client>
<client><id>2</id><address>192.0.2.4</address><time>1000</time><dropped>0</dropped><active/></client>
<meta><video><width>320</width><height>240</height><frame_rate>15</frame_rate><codec>H264</codec></video>
<audio><codec>AAC</codec><channels>1</channels></audio></meta>
<nclients>2</nclients><publishing/><active/></stream>
<nclients>2</nclients></live></application></server></rtmp>"""


def test_rendered_config_has_the_safe_settings_and_passes_its_own_check(tmp_path):
    text = render(RenderOptions(prefix=tmp_path, callback_token=TOKEN, callback_url="http://10.0.0.5:8080/",
                                update_timeout="15s"))
    for line in ("load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;", "worker_processes 1;",
                 "notify_method post;", "notify_update_timeout 15s;", "drop_idle_publisher 10s;",
                 f"on_publish http://10.0.0.5:8080/rtmp/on_publish?token={TOKEN};",
                 f"on_update http://10.0.0.5:8080/rtmp/on_update?token={TOKEN};",
                 f"on_publish_done http://10.0.0.5:8080/rtmp/on_publish_done?token={TOKEN};", "listen 127.0.0.1:8088;",
                 f"client_body_temp_path {tmp_path / 'client_body_temp'};", f"error_log {tmp_path / 'error.log'} warn;",
                 "allow 127.0.0.1/32;"):
        assert line in text
    assert "{{" not in text and "on_play" not in text and "\ndaemon off;\n" in text
    assert check_config(text) == []


def test_container_render_opens_stat_to_the_private_network_only(tmp_path):
    text = render(RenderOptions(prefix=tmp_path, callback_token=TOKEN, http_listen="0.0.0.0:8088",
                                stat_allow=("172.16.0.0/12",), error_log="stderr"))
    assert "allow 172.16.0.0/12;" in text and "error_log stderr warn;" in text and "listen 0.0.0.0:8088;" in text
    assert check_config(text) == []
    with pytest.raises(InvalidInput, match="private networks"):
        render(RenderOptions(prefix=tmp_path, callback_token=TOKEN, http_listen="0.0.0.0:8088",
                             stat_allow=("8.8.8.0/24",)))


@pytest.mark.skipif(bool(tools_missing()), reason="needs nginx with libnginx-mod-rtmp")
@pytest.mark.parametrize(("foreground", "flags"), [(True, []), (False, ["-g", "daemon off;"])])
def test_rendered_config_is_accepted_by_nginx(tmp_path, foreground, flags):
    """As a child process (daemon off; in the file) and as containers run it (`-g "daemon off;"`, no clash)."""
    (tmp_path / "nginx.conf").write_text(render(RenderOptions(prefix=tmp_path, callback_token=TOKEN, play_control=True,
                                                              foreground=foreground)))
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", "nginx.conf", "-e", "error.log", *flags],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("options", "message"), [
    ({"callback_url": "https://api.example.com"}, "plain http:// URLs only"),
    ({"app": "live;evil"}, "invalid application"),
    ({"update_timeout": "30s; on_publish x"}, "invalid update-timeout"),
    ({"http_listen": "0.0.0.0:8088"}, "is not loopback"),
    ({"stat_allow": ("nope",)}, "invalid --stat-allow"),
    ({"app": "live\n"}, "invalid application"),
    ({"update_timeout": "30s\n"}, "invalid update-timeout"),
    ({"drop_idle_publisher": "10s\n"}, "invalid drop-idle-publisher"),
    ({"callback_token": TOKEN + ";\n on_publish http://evil"}, "invalid callback token"),
    ({"callback_token": "short"}, "invalid callback token"),
])
def test_unsafe_render_options_are_refused(tmp_path, options, message):
    with pytest.raises(InvalidInput, match=message) as raised:
        render(RenderOptions(**{"prefix": tmp_path, "callback_token": TOKEN, **options}))
    assert TOKEN not in str(raised.value)


def test_check_config_names_every_unsafe_setting():
    messages = [(f.level, f.line, f.message.split(" ")[0]) for f in check_config(UNSAFE)]
    assert ("warning", 2, "worker_processes") in messages
    assert ("error", 6, "notify_method") in messages
    assert ("error", 9, "on_publish") in messages
    assert ("warning", 3, "rtmp") in messages  # no access_log off
    assert ("warning", 14, "log_format") in messages
    assert ("error", 17, "rtmp_stat") in messages
    assert ("error", 18, "rtmp_control") in messages
    assert any("on_update" in f.message for f in check_config(UNSAFE))
    assert any(f.line == 9 and "callback token" in f.message for f in check_config(UNSAFE))


def test_check_config_cli_exit_status(tmp_path, monkeypatch):
    from backend.config import get_settings

    monkeypatch.setenv("STREAMS_CALLBACK_TOKEN", TOKEN)
    get_settings.cache_clear()
    runner = CliRunner()
    bad, good = tmp_path / "bad.conf", tmp_path / "good.conf"
    bad.write_text(UNSAFE)
    good.write_text(render(RenderOptions(prefix=tmp_path, callback_token=TOKEN)))
    failed = runner.invoke(app, ["streams", "check-config", str(bad)])
    assert failed.exit_code == 1 and "notify_method get" in failed.output
    passed = runner.invoke(app, ["streams", "check-config", str(good)])
    assert passed.exit_code == 0 and "no problems found" in passed.output
    rendered = runner.invoke(app, ["streams", "nginx-config", "--prefix", str(tmp_path), "--callback-url",
                                   "http://127.0.0.1:9000", "-o", str(tmp_path / "out.conf")])
    get_settings.cache_clear()
    assert rendered.exit_code == 0 and TOKEN not in rendered.output
    assert f"on_update http://127.0.0.1:9000/rtmp/on_update?token={TOKEN};" in Path(tmp_path / "out.conf").read_text()
    assert (tmp_path / "out.conf").stat().st_mode & 0o777 == 0o600  # it holds the callback token


def test_compose_opens_the_callbacks_to_nginx_only_and_renders_with_the_apis_token(compose_model):  # noqa: F811
    services, networks = compose_model["services"], compose_model["networks"]
    nginx_address = services["nginx-rtmp"]["networks"]["rtmp"]["ipv4_address"]
    assert json.loads(services["api"]["environment"]["STREAMS_CALLBACK_ALLOWED_NETS"]) == [f"{nginx_address}/32"]
    (subnet,) = [c["subnet"] for c in networks["rtmp"]["ipam"]["config"]]
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)
    # the render step resolves the token as the api does: same setting, same secrets store
    api, render_step = services["api"], services["nginx-config"]
    assert api["environment"].get("STREAMS_CALLBACK_TOKEN") == render_step["environment"].get("STREAMS_CALLBACK_TOKEN")
    api_store, render_store = ({v["source"] for v in service["volumes"] if v["target"] == "/app/.data"}
                               for service in (api, render_step))
    assert api_store and api_store == render_store


def test_stat_xml_is_parsed_into_streams():
    (stream,) = parse_stat(STAT)
    assert (stream.app, stream.name, stream.publishing, stream.publisher_addr) == ("live", "pub", True, "127.0.0.1")
    assert (stream.width, stream.height, stream.frame_rate) == (320, 240, 15.0)
    assert (stream.video_codec, stream.audio_codec, stream.clients) == ("H264", "AAC", 2)
    assert (stream.uptime_s, stream.bw_in_kbps, stream.bw_video_kbps) == (12.128, 812.0, 748.0)


@pytest.mark.parametrize("bad", ["<rtmp><server>", '<!DOCTYPE x [<!ENTITY a "aaaa">]><rtmp>&a;</rtmp>'])
def test_malformed_or_hostile_stat_xml_is_refused(bad):
    with pytest.raises(Unavailable):
        parse_stat(bad)
