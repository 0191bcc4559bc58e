# Runs inside GIMP 3, for the frames tests (frames_cases.py, gui_frames_driver.py): the animation they
# restyle, made of a real photo.
import os

from gi.repository import Gimp, Gio


def pan_animation(examples, names, size, photo_size, start, step, smaller=None):
    """An image of `size` whose layers are the frames `names` (the bottom layer first, as GIMP's GIF
    import makes them): the example photo scaled to `photo_size`, each frame `step` pixels further
    left from the offsets `start`. `smaller`: (frame number, (width, height, x, y)) leaves that frame a
    smaller layer with offsets of its own."""
    photo = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(examples, "tubingen.jpg")))
    photo.scale(*photo_size)
    image = Gimp.Image.new(*size, Gimp.ImageBaseType.RGB)
    for number, name in enumerate(names):
        layer = Gimp.Layer.new_from_drawable(photo.get_layers()[0], image)
        image.insert_layer(layer, None, 0)
        layer.set_name(name)
        layer.set_offsets(start[0] - step * number, start[1])
        if smaller and number == smaller[0]:
            layer.resize(*smaller[1])
        else:
            layer.resize_to_image_size()
    photo.delete()
    return image
