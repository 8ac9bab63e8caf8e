"""The base of the tests' fake engines: every :class:`launcher._engine.EngineAPI` method, each
failing the test when called; a fake overrides the calls its test expects. mypy holds the
fakes to the Protocol the real :class:`launcher._engine.Engine` implements."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, NoReturn

from launcher._engine import ContainerExit, EngineAPI, EngineInfo


def _unexpected(call: str) -> NoReturn:
    raise AssertionError(f"unexpected engine call: {call}")


class FakeEngineBase:
    def close(self) -> None:
        pass

    def info(self) -> EngineInfo:
        _unexpected("info")

    def image_id(self, ref: str) -> str | None:
        _unexpected(f"image_id {ref}")

    def inspect_image(self, ref: str) -> dict[str, Any]:
        _unexpected(f"inspect_image {ref}")

    def build(self, context: IO[bytes], *, dockerfile: str, tag: str,
              build_args: Mapping[str, str], labels: Mapping[str, str] | None = None,
              no_cache: bool = False, on_output: Callable[[str], None] = lambda _: None) -> str:
        _unexpected(f"build {tag}")

    def run_once(self, image: str, command: Sequence[str], timeout: float = 60) -> str:
        _unexpected(f"run_once {image}")

    def run_container(self, body: Mapping[str, Any], timeout: float,
                      archives: Sequence[tuple[str, bytes]] = ()) -> ContainerExit:
        _unexpected(f"run_container {body.get('Image')}")

    def create_container(self, body: Mapping[str, Any], name: str | None = None) -> str:
        _unexpected(f"create_container {name}")

    def start(self, container: str) -> None:
        _unexpected(f"start {container}")

    def find_container(self, name: str) -> dict[str, Any] | None:
        _unexpected(f"find_container {name}")

    def inspect_container(self, container: str) -> dict[str, Any]:
        _unexpected(f"inspect_container {container}")

    def containers(self, labels: Mapping[str, str], all: bool = True) -> list[dict[str, Any]]:
        _unexpected("containers")

    def stop(self, container: str, timeout: int = 10) -> None:
        _unexpected(f"stop {container}")

    def wait(self, container: str, timeout: float) -> int:
        _unexpected(f"wait {container}")

    def remove_container(self, container: str, force: bool = False) -> None:
        _unexpected(f"remove_container {container}")

    def logs(self, container: str, tail: int | None = None) -> str:
        _unexpected(f"logs {container}")

    def stream_logs(self, container: str, tail: int | None = None,
                    follow: bool = False) -> Iterator[str]:
        _unexpected(f"stream_logs {container}")

    def watch_output(self, container: str, on_output: Callable[[], None]) -> Callable[[], None]:
        return lambda: None  # as the real one where a log cannot be followed: never called

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        _unexpected(f"put_archive {container}")

    def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        _unexpected(f"create_volume {name}")

    def volume_exists(self, name: str) -> bool:
        _unexpected(f"volume_exists {name}")

    def remove_volume(self, name: str, force: bool = False) -> None:
        _unexpected(f"remove_volume {name}")

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        _unexpected("volumes")


_: type[EngineAPI] = FakeEngineBase  # the type checker holds the base to the Protocol
